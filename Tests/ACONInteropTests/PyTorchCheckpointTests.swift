import ACONInterop
import ACONNN
import ACONTensor
import Foundation
import Testing

@Suite("PyTorch checkpoints")
struct PyTorchCheckpointTests {
  /// Every tensor PyTorch stored, with its values, shape and type, whatever its layout.
  func checkSmall(_ file: SafeTensorsFile) throws {
    let expected = try expectedTensors().filter { $0.key.hasPrefix("small.") }
    #expect(Set(file.names) == Set(expected.keys.map { String($0.dropFirst("small.".count)) }))
    for (key, want) in expected {
      let name = String(key.dropFirst("small.".count))
      let got = try #require(file.tensors[name], "\(name)")
      #expect(got.shape == want.shape, "\(name)")
      #expect(got.scalars == want.scalars, "\(name)")
    }
    #expect(
      file.names.first == "0.weight" && file.names.last == "double",
      "state dict order: \(file.names)")
    #expect(
      file.dtypes["1.num_batches_tracked"] == .i64
        && file.tensors["1.num_batches_tracked"]?.scalars == [5])
    #expect(
      file.dtypes["half"] == .f16 && file.dtypes["double"] == .f64
        && file.dtypes["0.weight"] == .f32)
    #expect(file.metadata["epoch"] == "7" && file.metadata["arch"] == "tiny")
  }

  @Test func readsTheZipFormat() throws {
    try checkSmall(PyTorchCheckpoint.read(try fixture("small_zip.pth")))
  }

  @Test func readsTheLegacyFormat() throws {
    try checkSmall(PyTorchCheckpoint.read(try fixture("small_legacy.pth")))
  }

  /// A DataParallel checkpoint loads strictly into the same network built here, and the
  /// network then computes what PyTorch computed.
  @Test func loadsDataParallelKeysIntoANetwork() throws {
    let file = try PyTorchCheckpoint.read(try fixture("dataparallel.pth"))
    #expect(file.names.allSatisfy { $0.hasPrefix("module.") })
    var rng = RandomGenerator(seed: 1)
    let net = Sequential([
      Conv2d(inputChannels: 2, outputChannels: 4, kernelSize: 3, padding: 1, using: &rng),
      BatchNorm2d(4), ReLU(),
      Conv2d(inputChannels: 4, outputChannels: 3, kernelSize: 1, using: &rng), BatchNorm2d(3),
    ])
    try InitialWeights.load(file, into: net, resetClassifier: false, path: "dataparallel.pth")
    let expected = try expectedTensors()
    for (name, value) in net.stateDict() {
      #expect(value.scalars == expected["dp." + name]?.scalars, "\(name)")
    }
    net.eval()
    let y = try withoutGradients { try net(expected["dp.input"]!) }
    #expect(y.shape == expected["dp.output"]!.shape)
    #expect(relativeError(y, expected["dp.output"]!) < 1e-5)
  }

  @Test(arguments: [
    ("malicious_zip.pth", "posix.system"), ("malicious_legacy.pth", "__builtin__.eval"),
  ])
  func refusesForbiddenGlobals(name: String, global: String) throws {
    let marker = "/tmp/acon-pwned"
    try? FileManager.default.removeItem(atPath: marker)
    do {
      _ = try PyTorchCheckpoint.read(try fixture(name))
      Issue.record("\(name) was accepted")
    } catch let error as InteropError {
      #expect(error.description.contains("refusing the global \(global)"), "\(error)")
      #expect(error.description.contains("nothing was executed"), "\(error)")
    }
    #expect(!FileManager.default.fileExists(atPath: marker))
  }

  @Test func refusesAStorageOfTheWrongSize() throws {
    #expect {
      _ = try PyTorchCheckpoint.read(try fixture("storage_mismatch.pth"))
    } throws: { error in
      "\(error)".contains(
        "storage 0 of tensor 0.weight holds 212 bytes, but its 54 float32 elements need 216")
    }
    // A tensor that reaches past its storage's end, in a pickle written here.
    var pickle = PickleWriterProbe.stateDict(name: "w", storageCount: 4, shape: [3, 3])
    let zip = try StoredZipArchive.write(
      [("a/data.pkl", pickle.removeFirst()), ("a/data/0", [UInt8](repeating: 0, count: 16))],
      path: "m")
    #expect {
      _ = try PyTorchCheckpoint.decode(zip, path: "m.pth")
    } throws: { error in "\(error)".contains("storage size mismatch") }
  }

  @Test func refusesUnknownOpcodes() throws {
    var bytes = try fixtureBytes("small_legacy.pth")
    bytes[2] = 0xFF  // the LONG1 of the magic number
    #expect {
      _ = try PyTorchCheckpoint.decode(bytes, path: "x.pth")
    } throws: { error in "\(error)".contains("unknown or unsupported opcode 0xff") }
    #expect(throws: InteropError.self) {
      _ = try PyTorchCheckpoint.decode([0x80, 2, 0x49], path: "int.pth")
    }
    #expect(throws: InteropError.self) {
      _ = try PyTorchCheckpoint.decode(Array("hello".utf8), path: "text.pth")
    }
  }

  /// A legacy-format file whose object is `pickle` (after the magic number, version and info;
  /// then an empty storage key list).
  func legacyFile(_ pickle: [UInt8]) -> [UInt8] {
    let magic: [UInt8] = [
      0x80, 2, 0x8A, 10, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E,
    ]
    return magic + [0x80, 2, 0x4D, 0xE9, 0x03, 0x2E] + [0x80, 2, 0x7D, 0x2E] + [0x80, 2] + pickle
      + [0x80, 2, 0x5D, 0x2E]
  }

  /// Hostile structures end in an error, not in unbounded recursion: a list that contains
  /// itself, tuples nested 5000 deep, lists nested 200,000 deep through the memo.
  @Test func refusesHostileStructuresWithoutRecursing() throws {
    let selfContaining: [UInt8] = [0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]  // l = []; l.append(l)
    #expect {
      _ = try PyTorchCheckpoint.decode(legacyFile(selfContaining), path: "cycle.pth")
    } throws: { error in "\(error)".contains("holds a list, not a state dict") }

    let deepTuples: [UInt8] = [0x4B, 1] + [UInt8](repeating: 0x85, count: 5000) + [0x2E]
    #expect {
      _ = try PyTorchCheckpoint.decode(legacyFile(deepTuples), path: "deep.pth")
    } throws: { error in "\(error)".contains("tuples nested more than 1000 deep") }

    func index(_ i: Int) -> [UInt8] { (0..<4).map { UInt8((i >> (8 * $0)) & 0xFF) } }
    var deepLists: [UInt8] = [0x5D, 0x72] + index(0)
    for i in 0..<200_000 {
      // push a new list, memoize it, append it to the top, drop the top, fetch the new one
      deepLists += [0x5D, 0x72] + index(i + 1) + [0x61, 0x30, 0x6A] + index(i + 1)
    }
    deepLists += [0x30, 0x6A] + index(0) + [0x2E]
    #expect {
      _ = try PyTorchCheckpoint.decode(legacyFile(deepLists), path: "nested.pth")
    } throws: { error in "\(error)".contains("holds a list, not a state dict") }
  }

  /// Every prefix of a checkpoint is an error with a message, never a crash or a partial read.
  @Test(arguments: ["small_legacy.pth", "small_zip.pth", "dataparallel.pth"])
  func refusesTruncatedFiles(name: String) throws {
    let bytes = try fixtureBytes(name)
    for length in stride(from: 0, to: bytes.count, by: name == "small_legacy.pth" ? 1 : 7) {
      #expect(throws: InteropError.self, "\(name) cut at \(length)") {
        _ = try PyTorchCheckpoint.decode(Array(bytes[..<length]), path: name)
      }
    }
  }

  @Test func refusesCorruptZips() throws {
    var bytes = try fixtureBytes("small_zip.pth")
    let archive = try StoredZipArchive(bytes: bytes, path: "small_zip.pth")
    let entry = try #require(archive.entries.first { $0.name.hasSuffix("/data/0") })
    bytes[entry.dataOffset + 3] ^= 0x40
    #expect {
      _ = try PyTorchCheckpoint.decode(bytes, path: "flipped.pth")
    } throws: { error in "\(error)".contains("fails its CRC-32 check") }
    // A central directory that points past the end.
    var broken = try fixtureBytes("small_zip.pth")
    broken[broken.count - 6] = 0xFF
    broken[broken.count - 5] = 0xFF
    #expect(throws: InteropError.self) {
      _ = try PyTorchCheckpoint.decode(broken, path: "broken.pth")
    }
  }

  /// What this module writes, it reads back the same (torch.load reads it too: see the
  /// fixture script's README entry).
  @Test func writesWhatItReads() throws {
    let original = try PyTorchCheckpoint.read(try fixture("small_zip.pth"))
    let entries = original.names.map {
      SafeTensors.Entry(
        $0, original.tensors[$0]!,
        dtype: original.dtypes[$0]!.isWritable ? original.dtypes[$0]! : .f32)
    }
    let bytes = PyTorchCheckpoint.encode(entries, metadata: ["acon.model": "resnet18"])
    let back = try PyTorchCheckpoint.decode(bytes, path: "roundtrip.pth")
    #expect(back.names == original.names)
    for name in original.names {
      #expect(back.tensors[name]?.shape == original.tensors[name]?.shape)
      #expect(back.tensors[name]?.scalars == original.tensors[name]?.scalars, "\(name)")
    }
    #expect(back.dtypes["1.num_batches_tracked"] == .i64 && back.dtypes["double"] == .f64)
    #expect(back.metadata == ["acon.model": "resnet18"])
    // Without metadata: a plain state dict.
    let plain = try PyTorchCheckpoint.decode(PyTorchCheckpoint.encode(entries), path: "plain.pth")
    #expect(plain.names == original.names && plain.metadata.isEmpty)
  }
}

/// Hand-made pickles for the cases PyTorch never writes.
enum PickleWriterProbe {
  /// `{name: _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', storageCount), 0, shape,
  /// contiguous strides, False, OrderedDict())}` as protocol-2 bytes.
  static func stateDict(name: String, storageCount: Int, shape: [Int]) -> [[UInt8]] {
    func string(_ s: String) -> [UInt8] { [0x58] + le32(UInt32(s.utf8.count)) + Array(s.utf8) }
    func global(_ m: String, _ n: String) -> [UInt8] { [0x63] + Array("\(m)\n\(n)\n".utf8) }
    func int(_ v: Int) -> [UInt8] { [0x4B, UInt8(v)] }
    var strides = [Int](repeating: 1, count: shape.count)
    for d in stride(from: shape.count - 2, through: 0, by: -1) {
      strides[d] = strides[d + 1] * shape[d + 1]
    }
    var b: [UInt8] =
      [0x80, 2, 0x7D, 0x28] + string(name) + global("torch._utils", "_rebuild_tensor_v2")
    b +=
      [0x28, 0x28] + string("storage") + global("torch", "FloatStorage") + string("0")
      + string("cpu")
    b += int(storageCount) + [0x74, 0x51] + int(0)
    b += [0x28] + shape.flatMap(int) + [0x74] + [0x28] + strides.flatMap(int) + [0x74]
    b += [0x89] + global("collections", "OrderedDict") + [0x29, 0x52, 0x74, 0x52, 0x75, 0x2E]
    return [b]
  }

  static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }
}
