import ACONTensor
import Foundation
import Testing

@Suite("SafeTensors")
struct SafeTensorsTests {
  /// A fresh empty directory for one test.
  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("acon-safetensors-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  /// A file made of a header length, `header` (unpadded) and `data`.
  func fileBytes(_ header: String, data: [UInt8], declaredLength: UInt64? = nil) -> Data {
    let h = Array(header.utf8)
    var out = Data()
    var n = (declaredLength ?? UInt64(h.count)).littleEndian
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    out.append(contentsOf: h)
    out.append(contentsOf: data)
    return out
  }

  /// Expects decoding to throw `invalidFile` whose detail contains `fragment`.
  func expectInvalid(
    _ bytes: Data, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    do {
      _ = try SafeTensors.decode(bytes, path: "bad.safetensors")
      Issue.record(
        "accepted a malformed file (expected \"\(fragment)\")", sourceLocation: sourceLocation)
    } catch let TensorError.invalidFile(path, detail) {
      #expect(path == "bad.safetensors", sourceLocation: sourceLocation)
      #expect(detail.contains(fragment), "\(detail)", sourceLocation: sourceLocation)
    } catch {
      Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
  }

  let twoFloats = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

  // MARK: Round trip

  @Test func roundTripKeepsValuesOrderTypesAndMetadata() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("weights.safetensors")
    let w = Tensor(shape: [2, 3], values: [1, -2, 3.25, .pi, -0.0, 1e-30])
    let entries: [SafeTensors.Entry] = [
      .init("layer.weight", w),
      .init("bn.num_batches_tracked", Tensor(scalar: 12345), dtype: .i64),
      .init("bn.running_mean", Tensor(shape: [3], values: [0.5, 0.25, -1])),
      .init("empty", Tensor.zeros([0, 3])),
      .init("counts", Tensor(shape: [2], values: [-7, 9]), dtype: .i32),
      .init("wide", Tensor(shape: [1], values: [0.1]), dtype: .f64),
    ]
    let metadata = ["epoch": "3", "quote \" and \\ and \n": "ünïcödé ✓"]
    try SafeTensors.write(entries, metadata: metadata, to: url)

    let file = try SafeTensors.read(url)
    #expect(file.names == entries.map(\.name))
    #expect(file.metadata == metadata)
    #expect(file.tensors["layer.weight"]!.shape == [2, 3])
    #expect(file.tensors["layer.weight"]!.scalars.map(\.bitPattern) == w.scalars.map(\.bitPattern))
    #expect(file.tensors["bn.num_batches_tracked"]!.shape == [])
    #expect(file.tensors["bn.num_batches_tracked"]!.item == 12345)
    #expect(file.dtypes["bn.num_batches_tracked"] == .i64)
    #expect(file.dtypes["layer.weight"] == .f32)
    #expect(file.tensors["empty"]!.shape == [0, 3])
    #expect(file.tensors["counts"]!.scalars == [-7, 9])
    #expect(file.tensors["wide"]!.scalars == [0.1])
    #expect(file.dtypes["wide"] == .f64)

    // Header padded to a multiple of 8; every tensor aligned to its element size.
    let bytes = try Data(contentsOf: url)
    let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    #expect(n % 8 == 0)
    // No temporary file is left beside the result.
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["weights.safetensors"])
  }

  @Test func overwriteReplacesTheFile() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("w.safetensors")
    try SafeTensors.write([("a", Tensor(shape: [2], values: [1, 2]))], to: url)
    try SafeTensors.write([("b", Tensor(shape: [1], values: [3]))], metadata: ["k": "v"], to: url)
    let file = try SafeTensors.read(url)
    #expect(file.names == ["b"])
    #expect(file.metadata == ["k": "v"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["w.safetensors"])
  }

  @Test func writerRejectsBadEntries() throws {
    let t = Tensor(shape: [1], values: [1])
    #expect(throws: TensorError.self) { try SafeTensors.encode([.init("a", t), .init("a", t)]) }
    #expect(throws: TensorError.self) { try SafeTensors.encode([.init("x", t, dtype: .bf16)]) }
    #expect(throws: TensorError.self) {
      try SafeTensors.encode([.init("x", Tensor(shape: [1], values: [.nan]), dtype: .i64)])
    }
    #expect(throws: TensorError.self) { try SafeTensors.encode([.init("__metadata__", t)]) }
  }

  @Test func failedWriteLeavesTheOldFile() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("w.safetensors")
    try SafeTensors.write([("a", Tensor(shape: [2], values: [1, 2]))], to: url)
    #expect(throws: TensorError.self) {
      try SafeTensors.write(
        [.init("n", Tensor(shape: [1], values: [.infinity]), dtype: .i64)], to: url)
    }
    #expect(try SafeTensors.read(url).tensors["a"]!.scalars == [1, 2])
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["w.safetensors"])
  }

  @Test func writingIntoAMissingDirectoryNamesThePath() throws {
    let url = URL(fileURLWithPath: "/nonexistent/acon/out.safetensors")
    do {
      try SafeTensors.write([("a", Tensor(scalar: 1))], to: url)
      Issue.record("wrote into a missing directory")
    } catch let TensorError.invalidFile(path, _) {
      #expect(path == url.path)
    }
  }

  @Test func readingAMissingFileNamesIt() throws {
    let url = URL(fileURLWithPath: "/nonexistent/acon/none.safetensors")
    do {
      _ = try SafeTensors.read(url)
      Issue.record("read a missing file")
    } catch let TensorError.invalidFile(path, _) {
      #expect(path == url.path)
    }
  }

  // MARK: A file written by the Python package

  @Test func readsFileWrittenByPythonSafetensors() throws {
    let url = try #require(
      Bundle.module.url(
        forResource: "safetensors_sample", withExtension: "safetensors", subdirectory: "Golden"))
    let file = try SafeTensors.read(url)
    #expect(file.metadata == ["format": "pt", "note": "ACON safetensors sample"])
    #expect(Set(file.names).count == 10)
    func values(_ name: String) -> [Float] { file.tensors[name]!.scalars }
    #expect(file.tensors["conv.weight"]!.shape == [2, 3])
    #expect(values("conv.weight") == [-1, -0.5, 0, 0.5, 1, 1.5])
    #expect(values("f64") == [Float(0.1), -2.5, 1e10])
    #expect(values("f16") == [0.5, -2, 65504, 0x1p-24])
    #expect(values("bf16") == [1.5, -3, 0x1p100])
    #expect(file.tensors["bn.num_batches_tracked"]!.shape == [])
    #expect(values("bn.num_batches_tracked") == [7])
    #expect(values("i32") == [-3, 4, 5, -6])
    #expect(values("u8") == [0, 255, 17])
    #expect(values("i8") == [-128, 127])
    #expect(values("bool") == [1, 0, 1])
    #expect(file.tensors["empty"]!.shape == [0, 4])
    #expect(file.dtypes["f16"] == .f16)
    #expect(file.dtypes["bf16"] == .bf16)
    #expect(file.dtypes["bool"] == .bool)
    #expect(file.dtypes["bn.num_batches_tracked"] == .i64)
  }

  @Test func eightBitFloats() throws {
    // E4M3fn: 0x38 = 1.0, 0x7e = 448 (largest), 0x01 = 2^-9, 0x7f NaN. E5M2: 0x3c = 1.0.
    let header =
      "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]},"
      + "\"b\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[4,6]}}"
    let file = try SafeTensors.decode(
      fileBytes(header, data: [0x38, 0x7e, 0x01, 0x7f, 0x3c, 0xc0]))
    let a = file.tensors["a"]!.scalars
    #expect(Array(a.prefix(3)) == [1, 448, 0x1p-9])
    #expect(a[3].isNaN)
    #expect(file.tensors["b"]!.scalars == [1, -2])
  }

  // MARK: Malformed files, one test per case the reference library rejects

  @Test func rejectsHeaderLengthBeyondTheFile() {
    expectInvalid(
      fileBytes(twoFloats, data: [UInt8](repeating: 0, count: 8), declaredLength: 500),
      "beyond the end")
  }

  @Test func rejectsHeaderOver100MB() {
    expectInvalid(fileBytes(twoFloats, data: [], declaredLength: 100_000_001), "limit")
  }

  @Test func rejectsFileShorterThanTheLengthField() {
    expectInvalid(Data([1, 0, 0]), "truncated")
  }

  @Test func rejectsInvalidJSON() {
    expectInvalid(fileBytes("{\"a\":{\"dtype\":\"F32\",", data: []), "not valid JSON")
    expectInvalid(fileBytes("{\"a\":1,}", data: []), "not valid JSON")
    expectInvalid(fileBytes("{} x", data: []), "not valid JSON")
  }

  @Test func rejectsInvalidUTF8() {
    var bytes = fileBytes("{\"a\":1}", data: [])
    bytes[10] = 0xff
    expectInvalid(bytes, "UTF-8")
  }

  @Test func rejectsNonObjectHeader() {
    expectInvalid(fileBytes("[1, 2]  ", data: []), "not a JSON object")
    expectInvalid(fileBytes("{\"a\":[1]}", data: []), "\"a\" is not an object")
  }

  @Test func rejectsDuplicateNames() {
    let h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"
    expectInvalid(fileBytes(h, data: [UInt8](repeating: 0, count: 8)), "duplicate name \"a\"")
  }

  @Test func rejectsUnknownDtype() {
    let h = "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}"
    expectInvalid(fileBytes(h, data: [UInt8](repeating: 0, count: 8)), "unknown dtype \"F31\"")
  }

  @Test func rejectsSizeThatDisagreesWithShape() {
    let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"
    expectInvalid(fileBytes(h, data: [UInt8](repeating: 0, count: 8)), "needs 3 x 4")
  }

  @Test func rejectsOverlappingOffsets() {
    let h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
    expectInvalid(fileBytes(h, data: [UInt8](repeating: 0, count: 12)), "overlap")
  }

  @Test func rejectsHoles() {
    let h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}"
    expectInvalid(fileBytes(h, data: [UInt8](repeating: 0, count: 12)), "hole")
    // The first tensor must start at 0.
    let g = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"
    expectInvalid(fileBytes(g, data: [UInt8](repeating: 0, count: 8)), "hole")
  }

  @Test func rejectsOffsetsThatDoNotCoverTheBuffer() {
    expectInvalid(fileBytes(twoFloats, data: [UInt8](repeating: 0, count: 12)), "trailing bytes")
  }

  @Test func rejectsTruncatedData() {
    expectInvalid(fileBytes(twoFloats, data: [UInt8](repeating: 0, count: 5)), "truncated")
  }

  @Test func rejectsBadFields() {
    let negative = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}"
    expectInvalid(fileBytes(negative, data: []), "shape is not a list")
    let reversed = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}"
    expectInvalid(fileBytes(reversed, data: []), "end before they begin")
    let missing = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}"
    expectInvalid(fileBytes(missing, data: []), "missing data_offsets")
    let meta = "{\"__metadata__\":{\"k\":1}}"
    expectInvalid(fileBytes(meta, data: []), "metadata value of \"k\" is not a string")
    let overflow =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}"
    expectInvalid(fileBytes(overflow, data: []), "overflows")
  }

  @Test func acceptsEmptyHeaderAndNullMetadata() throws {
    #expect(try SafeTensors.decode(fileBytes("{}", data: [])).names.isEmpty)
    #expect(
      try SafeTensors.decode(fileBytes("{\"__metadata__\":null}  ", data: [])).metadata.isEmpty)
  }
}
