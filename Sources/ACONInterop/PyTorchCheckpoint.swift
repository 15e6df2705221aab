import ACONTensor
import Foundation

/// PyTorch checkpoints (`.pth`, `.pth.tar`, `.pt`) read and written without Python.
///
/// Reads both formats of `torch.save`: the zip archive of PyTorch 1.6 and later, and the older
/// single pickle stream (`_use_new_zipfile_serialization=False`). The pickled object may be a
/// state dict or a dictionary holding one under `state_dict` or `model_state_dict` (as the ACON
/// reference saves it); the wrapper's string and number entries become metadata. Keys keep
/// their `module.` prefix; `Module.loadStateDict(_:strict:)` (ACONNN) strips it.
///
/// Element types: float32 as is; float16, bfloat16 and float64 converted to float32; int64 and
/// int32 (`num_batches_tracked`) converted to float32 and remembered as I64/I32. Any other
/// type is an error naming the tensor.
public enum PyTorchCheckpoint {
  /// The number `torch.save` pickles first in the legacy format.
  static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

  /// Reads the checkpoint at `url`.
  public static func read(_ url: URL) throws -> SafeTensorsFile {
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw InteropError(url.path, "cannot read: \(error.localizedDescription)")
    }
    return try decode([UInt8](data), path: url.path)
  }

  /// Decodes the bytes of a checkpoint; `path` names it in errors.
  public static func decode(_ bytes: [UInt8], path: String) throws -> SafeTensorsFile {
    if StoredZipArchive.looksLikeZip(bytes) { return try decodeZip(bytes, path: path) }
    guard bytes.first == 0x80 else {
      throw InteropError(path, "neither a zip archive nor a pickle: not a PyTorch checkpoint")
    }
    return try decodeLegacy(bytes, path: path)
  }

  static func decodeZip(_ bytes: [UInt8], path: String) throws -> SafeTensorsFile {
    let archive = try StoredZipArchive(bytes: bytes, path: path)
    let candidates = archive.entries.filter {
      $0.name.hasSuffix("/data.pkl") && $0.name.dropLast("/data.pkl".count).allSatisfy { $0 != "/" }
    }
    guard candidates.count == 1, let pickle = candidates.first else {
      throw InteropError(
        path, "a zip archive without exactly one ARCHIVE/data.pkl: not a PyTorch checkpoint")
    }
    let prefix = String(pickle.name.dropLast("data.pkl".count))
    if let order = archive.entry(named: prefix + "byteorder") {
      let text = String(decoding: try archive.contents(of: order), as: UTF8.self)
      guard text.hasPrefix("little") else {
        throw InteropError(
          path, "storages are \(text)-endian; only little-endian checkpoints are read")
      }
    }
    var unpickler = Unpickler(
      Array(try archive.contents(of: pickle)), path: path + ":" + pickle.name)
    defer { unpickler.releaseContainers() }
    let root = try unpickler.load()
    return try stateDictionary(root, path: path) { storage in
      guard let entry = archive.entry(named: prefix + "data/" + storage.key) else {
        throw InteropError(path, "storage \(storage.key) has no entry \(prefix)data/\(storage.key)")
      }
      return try archive.contents(of: entry)
    }
  }

  static func decodeLegacy(_ bytes: [UInt8], path: String) throws -> SafeTensorsFile {
    var unpickler = Unpickler(bytes, path: path)
    defer { unpickler.releaseContainers() }
    guard case .bigInteger(let magic) = try unpickler.load(), magic == legacyMagic else {
      throw InteropError(
        path, "a pickle without torch.save's magic number: not a PyTorch checkpoint")
    }
    guard case .int(let version) = try unpickler.load(), version == 1001 else {
      throw InteropError(path, "unknown legacy checkpoint protocol (expected 1001)")
    }
    if case .dictionary(let info) = try unpickler.load(), case .bool(false)? = info["little_endian"]
    {
      throw InteropError(path, "storages are big-endian; only little-endian checkpoints are read")
    }
    let root = try unpickler.load()
    guard case .list(let keyList) = try unpickler.load() else {
      throw InteropError(path, "the legacy checkpoint's storage key list is missing")
    }
    let keys = try keyList.items.map { item -> String in
      guard case .string(let key) = item else {
        throw InteropError(path, "a storage key that is not a string")
      }
      return key
    }
    // Each storage's type comes from the pickle; the element count precedes its bytes.
    let types = unpickler.storageTypes
    let reader = ByteReader(bytes, path: path)
    var position = unpickler.position
    var storages: [String: ArraySlice<UInt8>] = [:]
    for key in keys {
      let count = try reader.u64(at: position)
      let size = types[key]?.elementSize ?? 1
      guard count <= UInt64(bytes.count / size) else {
        throw InteropError(
          path, "storage \(key) claims \(count) elements, more than the file holds (truncated?)")
      }
      storages[key] = try reader.slice(position + 8, Int(count) * size)
      position += 8 + Int(count) * size
    }
    return try stateDictionary(root, path: path) { storage in
      guard let data = storages[storage.key] else {
        throw InteropError(path, "storage \(storage.key) is not in the file (truncated?)")
      }
      return data
    }
  }

  /// The state dict inside `root` as float32 tensors, reading storages through `bytesOf`.
  static func stateDictionary(
    _ root: PickleValue, path: String, bytesOf: (PickledStorage) throws -> ArraySlice<UInt8>
  ) throws -> SafeTensorsFile {
    guard case .dictionary(let top) = root else {
      throw InteropError(path, "the checkpoint holds a \(root.kind), not a state dict")
    }
    var dictionary = top
    var metadata: [String: String] = [:]
    for wrapperKey in ["state_dict", "model_state_dict"] {
      if case .dictionary(let inner)? = top[wrapperKey] {
        dictionary = inner
        for entry in top.entries {
          guard case .string(let key) = entry.key else { continue }
          switch entry.value {
          case .string(let s): metadata[key] = s
          case .int(let i): metadata[key] = String(i)
          case .float(let f): metadata[key] = String(f)
          default: break
          }
        }
        break
      }
    }
    var tensors: [String: Tensor] = [:]
    var dtypes: [String: SafeTensorsDType] = [:]
    var names: [String] = []
    var decoded: [String: [Float]] = [:]
    for entry in dictionary.entries {
      guard case .string(let name) = entry.key, case .tensor(let t) = entry.value else { continue }
      let storage = t.storage
      guard let dtype = safeTensorsType(storage.type) else {
        throw InteropError(
          path,
          "tensor \(name) has dtype \(storage.type.dtypeName); only float32, float16, bfloat16, "
            + "float64, int64 and int32 tensors are read")
      }
      if decoded[storage.key] == nil {
        let data = try bytesOf(storage)
        guard data.count == storage.elementCount * storage.type.elementSize else {
          throw InteropError(
            path,
            "storage \(storage.key) of tensor \(name) holds \(data.count) bytes, but its "
              + "\(storage.elementCount) \(storage.type.dtypeName) elements need \(storage.elementCount * storage.type.elementSize)"
          )
        }
        decoded[storage.key] = decodeElements(data, type: storage.type)
      }
      let values = decoded[storage.key]!
      let count = t.shape.reduce(1, *)
      var extent = t.offset
      for (size, stride) in zip(t.shape, t.strides) where size > 0 { extent += (size - 1) * stride }
      guard count == 0 || extent < values.count else {
        throw InteropError(
          path,
          "tensor \(name) of shape \(describe(t.shape)) reaches element \(extent) of storage "
            + "\(storage.key), which has \(values.count): storage size mismatch")
      }
      tensors[name] = Tensor(shape: t.shape, values: gather(values, t))
      dtypes[name] = dtype
      names.append(name)
    }
    guard !names.isEmpty else {
      let keys = dictionary.entries.compactMap { entry -> String? in
        if case .string(let k) = entry.key { return k }
        return nil
      }
      throw InteropError(
        path,
        "the checkpoint holds no tensors (top-level keys: \(keys.prefix(10).joined(separator: ", ")))"
      )
    }
    return SafeTensorsFile(tensors: tensors, dtypes: dtypes, names: names, metadata: metadata)
  }

  static func safeTensorsType(_ type: StorageType) -> SafeTensorsDType? {
    switch type {
    case .float: return .f32
    case .half: return .f16
    case .bfloat16: return .bf16
    case .double: return .f64
    case .long: return .i64
    case .int: return .i32
    default: return nil
    }
  }

  /// The elements of a little-endian storage, converted to Float.
  static func decodeElements(_ data: ArraySlice<UInt8>, type: StorageType) -> [Float] {
    let size = type.elementSize
    let count = data.count / size
    var out = [Float](repeating: 0, count: count)
    var p = data.startIndex
    for i in 0..<count {
      var bits: UInt64 = 0
      for b in 0..<size { bits |= UInt64(data[p + b]) << (8 * UInt64(b)) }
      p += size
      switch type {
      case .float: out[i] = Float(bitPattern: UInt32(truncatingIfNeeded: bits))
      case .half: out[i] = floatFromHalf(UInt16(truncatingIfNeeded: bits))
      case .bfloat16: out[i] = Float(bitPattern: UInt32(truncatingIfNeeded: bits) << 16)
      case .double: out[i] = Float(Double(bitPattern: bits))
      case .long: out[i] = Float(Int64(bitPattern: bits))
      case .int: out[i] = Float(Int32(bitPattern: UInt32(truncatingIfNeeded: bits)))
      default: out[i] = 0
      }
    }
    return out
  }

  /// IEEE half precision to single, subnormals, infinities and NaN included.
  static func floatFromHalf(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
      let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
      return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
  }

  /// The elements of a strided view, in row-major order.
  static func gather(_ values: [Float], _ t: PickledTensor) -> [Float] {
    let count = t.shape.reduce(1, *)
    var contiguous = true
    var expected = 1
    for (size, stride) in zip(t.shape, t.strides).reversed() where size != 1 {
      if stride != expected { contiguous = false }
      expected *= size
    }
    if contiguous { return Array(values[t.offset..<t.offset + count]) }
    var out: [Float] = []
    out.reserveCapacity(count)
    var index = [Int](repeating: 0, count: t.shape.count)
    for _ in 0..<count {
      var p = t.offset
      for d in 0..<index.count { p += index[d] * t.strides[d] }
      out.append(values[p])
      var d = index.count - 1
      while d >= 0 {
        index[d] += 1
        if index[d] < t.shape[d] { break }
        index[d] = 0
        d -= 1
      }
    }
    return out
  }

  // MARK: Writing

  /// The bytes of a zip-format checkpoint holding `entries` as a state dict that
  /// `torch.load(path, weights_only=True)` reads: an `OrderedDict` of float32 tensors (I64 and
  /// I32 entries as int64 and int32), wrapped as `{'state_dict': ..., key: value}` when there is
  /// metadata, so that the metadata survives the round trip.
  public static func encode(_ entries: [SafeTensors.Entry], metadata: [String: String] = [:])
    -> [UInt8]
  {
    var pickle = PickleWriter()
    pickle.protocolHeader()
    if !metadata.isEmpty {
      pickle.emptyDictionary()
      pickle.mark()
      pickle.string("state_dict")
    }
    pickle.global("collections", "OrderedDict")
    pickle.emptyTuple()
    pickle.reduce()
    var files: [(name: String, data: [UInt8])] = []
    if !entries.isEmpty { pickle.mark() }
    for (index, entry) in entries.enumerated() {
      let type: StorageType
      switch entry.dtype {
      case .i64: type = .long
      case .i32: type = .int
      case .f64: type = .double
      default: type = .float
      }
      let key = String(index)
      let values = entry.tensor.scalars
      var data: [UInt8] = []
      data.reserveCapacity(values.count * type.elementSize)
      for v in values {
        switch type {
        case .long: data += le64(UInt64(bitPattern: Int64(v)))
        case .int: data += le32(UInt32(bitPattern: Int32(v)))
        case .double: data += le64(Double(v).bitPattern)
        default: data += le32(v.bitPattern)
        }
      }
      files.append(("archive/data/" + key, data))
      pickle.string(entry.name)
      pickle.tensor(storageType: type.rawValue, key: key, shape: entry.tensor.shape)
    }
    if !entries.isEmpty { pickle.setItems() }
    if !metadata.isEmpty {
      for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
        pickle.string(key)
        pickle.string(value)
      }
      pickle.setItems()
    }
    pickle.stop()
    let all =
      [("archive/data.pkl", pickle.bytes), ("archive/byteorder", Array("little".utf8))]
      + files + [("archive/version", Array("3\n".utf8))]
    // Sizes are bounded by the tensors the process holds; stay below the 4 GiB zip limit.
    return (try? StoredZipArchive.write(all, path: "checkpoint")) ?? []
  }

  /// Writes `entries` as a zip-format checkpoint at `url` (see ``encode(_:metadata:)``).
  public static func write(
    _ entries: [SafeTensors.Entry], metadata: [String: String] = [:], to url: URL
  ) throws {
    let bytes = encode(entries, metadata: metadata)
    guard !bytes.isEmpty else {
      throw InteropError(url.path, "the tensors exceed the 4 GiB zip limit")
    }
    do {
      try Data(bytes).write(to: url, options: .atomic)
    } catch {
      throw InteropError(url.path, "cannot write: \(error.localizedDescription)")
    }
  }
}

/// The few pickle opcodes (protocol 2) a state dict needs.
struct PickleWriter {
  var bytes: [UInt8] = []

  mutating func protocolHeader() { bytes += [0x80, 2] }
  mutating func stop() { bytes.append(0x2E) }
  mutating func mark() { bytes.append(0x28) }
  mutating func emptyTuple() { bytes.append(0x29) }
  mutating func emptyDictionary() { bytes.append(0x7D) }
  mutating func reduce() { bytes.append(0x52) }
  mutating func setItems() { bytes.append(0x75) }
  mutating func tuple() { bytes.append(0x74) }
  mutating func global(_ module: String, _ name: String) {
    bytes.append(0x63)
    bytes += Array(module.utf8) + [0x0A] + Array(name.utf8) + [0x0A]
  }
  mutating func string(_ s: String) {
    let utf8 = Array(s.utf8)
    bytes.append(0x58)
    bytes += le32(UInt32(utf8.count)) + utf8
  }
  mutating func integer(_ v: Int) {
    if v >= 0 && v < 256 {
      bytes += [0x4B, UInt8(v)]
    } else if v >= 0 && v < 65_536 {
      bytes += [0x4D] + le16(UInt16(v))
    } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
      bytes += [0x4A] + le32(UInt32(bitPattern: Int32(v)))
    } else {
      bytes += [0x8A, 8] + le64(UInt64(bitPattern: Int64(v)))
    }
  }
  mutating func integerTuple(_ values: [Int]) {
    mark()
    for value in values { integer(value) }
    tuple()
  }

  /// `_rebuild_tensor_v2(storage, 0, shape, contiguous strides, False, OrderedDict())`.
  mutating func tensor(storageType: String, key: String, shape: [Int]) {
    global("torch._utils", "_rebuild_tensor_v2")
    mark()
    mark()
    string("storage")
    global("torch", storageType)
    string(key)
    string("cpu")
    integer(shape.reduce(1, *))
    tuple()
    bytes.append(0x51)  // BINPERSID
    integer(0)
    integerTuple(shape)
    var strides = [Int](repeating: 1, count: shape.count)
    for d in stride(from: shape.count - 2, through: 0, by: -1) {
      strides[d] = strides[d + 1] * shape[d + 1]
    }
    integerTuple(strides)
    bytes.append(0x89)  // NEWFALSE
    global("collections", "OrderedDict")
    emptyTuple()
    reduce()
    tuple()
    reduce()
  }
}
