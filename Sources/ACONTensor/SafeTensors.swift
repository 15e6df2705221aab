import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The element types a safetensors file can declare.
///
/// Source: the safetensors format (huggingface/safetensors, `Dtype`). Every type is converted to
/// Float32 on read; the declared type is kept in ``SafeTensorsFile/dtypes``.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
  case bool = "BOOL"
  case u8 = "U8"
  case i8 = "I8"
  case f8e5m2 = "F8_E5M2"
  case f8e4m3 = "F8_E4M3"
  case i16 = "I16"
  case u16 = "U16"
  case f16 = "F16"
  case bf16 = "BF16"
  case i32 = "I32"
  case u32 = "U32"
  case f32 = "F32"
  case f64 = "F64"
  case i64 = "I64"
  case u64 = "U64"

  /// Bytes per element.
  public var size: Int {
    switch self {
    case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
    case .i16, .u16, .f16, .bf16: return 2
    case .i32, .u32, .f32: return 4
    case .f64, .i64, .u64: return 8
    }
  }

  /// The types `SafeTensors.write` can store.
  public var isWritable: Bool { [.f32, .f64, .i64, .i32].contains(self) }
}

/// The contents of a safetensors file.
public struct SafeTensorsFile {
  /// Every tensor, converted to Float32.
  public var tensors: [String: Tensor]
  /// The element type each tensor had in the file.
  public var dtypes: [String: SafeTensorsDType]
  /// The free-form string metadata (`__metadata__`).
  public var metadata: [String: String]
  /// Tensor names in the order of the header. `SafeTensors.write` keeps the
  /// order it is given; the Python `safetensors` writer sorts by dtype size, then by name.
  public var names: [String]

  /// The tensors in header order.
  public var orderedTensors: [(String, Tensor)] { names.map { ($0, tensors[$0]!) } }

  /// The tensor called `name`, or an error naming the file and the missing tensor.
  public func tensor(_ name: String, path: String = "safetensors file") throws -> Tensor {
    guard let t = tensors[name] else {
      throw TensorError.invalidFile(path: path, detail: "no tensor named \"\(name)\"")
    }
    return t
  }
}

/// Reads and writes safetensors files, the weight format of the `safetensors` package.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
/// The reader rejects every malformation the reference library rejects, each with a
/// ``TensorError/invalidFile(path:detail:)`` that names the problem.
public enum SafeTensors {
  /// The reference library's cap on the header size.
  public static let maximumHeaderBytes = 100_000_000

  /// One tensor to write: its name, value and stored element type.
  public struct Entry {
    public var name: String
    public var tensor: Tensor
    public var dtype: SafeTensorsDType

    public init(_ name: String, _ tensor: Tensor, dtype: SafeTensorsDType = .f32) {
      self.name = name
      self.tensor = tensor
      self.dtype = dtype
    }
  }

  // MARK: Reading

  /// Reads the file at `url`.
  public static func read(_ url: URL) throws -> SafeTensorsFile {
    let path = url.path
    let bytes: Data
    do {
      bytes = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw TensorError.invalidFile(
        path: path, detail: "cannot read: \(error.localizedDescription)")
    }
    return try decode(bytes, path: path)
  }

  /// Decodes the bytes of a safetensors file; `path` names it in errors.
  public static func decode(_ bytes: Data, path: String = "<memory>") throws -> SafeTensorsFile {
    func fail(_ detail: String) -> TensorError { .invalidFile(path: path, detail: detail) }
    return try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> SafeTensorsFile in
      guard raw.count >= 8 else {
        throw fail("truncated: \(raw.count) bytes, shorter than the 8-byte header length")
      }
      var n: UInt64 = 0
      for i in 0..<8 { n |= UInt64(raw[i]) << (8 * UInt64(i)) }
      guard n <= UInt64(maximumHeaderBytes) else {
        throw fail("header length \(n) exceeds the \(maximumHeaderBytes)-byte limit")
      }
      let headerLength = Int(n)
      guard 8 + headerLength <= raw.count else {
        throw fail(
          "truncated: header length \(headerLength) goes beyond the end of the \(raw.count)-byte file"
        )
      }
      let headerBytes = UnsafeRawBufferPointer(rebasing: raw[8..<(8 + headerLength)])
      guard let text = String(validating: headerBytes, as: UTF8.self) else {
        throw fail("header is not valid UTF-8")
      }
      guard headerBytes.first == UInt8(ascii: "{") else {
        throw fail("header is not a JSON object (it does not start with '{')")
      }
      let json: JSONValue
      do {
        json = try JSONParser.parse(text)
      } catch let e as JSONParser.Failure {
        throw fail("header is not valid JSON: \(e.message)")
      }
      guard case .object(let members) = json else {
        throw fail("header is not a JSON object")
      }

      struct Info {
        var name: String
        var dtype: SafeTensorsDType
        var shape: [Int]
        var begin: Int
        var end: Int
      }
      var infos: [Info] = []
      var metadata: [String: String] = [:]
      var seen = Set<String>()
      for (name, value) in members {
        guard seen.insert(name).inserted else { throw fail("duplicate name \"\(name)\"") }
        if name == "__metadata__" {
          switch value {
          case .null: break
          case .object(let pairs):
            var keys = Set<String>()
            for (k, v) in pairs {
              guard keys.insert(k).inserted else { throw fail("duplicate metadata key \"\(k)\"") }
              guard case .string(let s) = v else {
                throw fail("metadata value of \"\(k)\" is not a string")
              }
              metadata[k] = s
            }
          default: throw fail("__metadata__ is not an object of strings")
          }
          continue
        }
        guard case .object(let fields) = value else {
          throw fail("entry \"\(name)\" is not an object")
        }
        var dtypeName: String?
        var shape: [Int]?
        var offsets: [Int]?
        var fieldNames = Set<String>()
        for (key, v) in fields {
          guard fieldNames.insert(key).inserted else {
            throw fail("tensor \"\(name)\": duplicate field \"\(key)\"")
          }
          switch key {
          case "dtype":
            guard case .string(let s) = v else {
              throw fail("tensor \"\(name)\": dtype is not a string")
            }
            dtypeName = s
          case "shape":
            guard let s = v.nonNegativeIntegers else {
              throw fail("tensor \"\(name)\": shape is not a list of non-negative integers")
            }
            shape = s
          case "data_offsets":
            guard let o = v.nonNegativeIntegers, o.count == 2 else {
              throw fail("tensor \"\(name)\": data_offsets is not two non-negative integers")
            }
            offsets = o
          default:
            throw fail("tensor \"\(name)\": unknown field \"\(key)\"")
          }
        }
        guard let dtypeName else { throw fail("tensor \"\(name)\": missing dtype") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
          throw fail("tensor \"\(name)\": unknown dtype \"\(dtypeName)\"")
        }
        guard let shape else { throw fail("tensor \"\(name)\": missing shape") }
        guard let offsets else { throw fail("tensor \"\(name)\": missing data_offsets") }
        infos.append(
          Info(name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1]))
      }

      // Offsets must tile the data buffer exactly: sorted by begin, each starts where the
      // previous ended, and the last ends at the end of the file.
      let dataStart = 8 + headerLength
      let dataLength = raw.count - dataStart
      var cursor = 0
      for info in infos.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
        guard info.end >= info.begin else {
          throw fail(
            "tensor \"\(info.name)\": data_offsets [\(info.begin), \(info.end)] end before they begin"
          )
        }
        if info.begin < cursor {
          throw fail(
            "tensor \"\(info.name)\": data_offsets [\(info.begin), \(info.end)] overlap the previous tensor (which ends at \(cursor))"
          )
        }
        if info.begin > cursor {
          throw fail(
            "tensor \"\(info.name)\": data_offsets [\(info.begin), \(info.end)] leave a hole at bytes \(cursor)..<\(info.begin)"
          )
        }
        var elements = 1
        for d in info.shape {
          let (p, overflow) = elements.multipliedReportingOverflow(by: d)
          guard !overflow else {
            throw fail("tensor \"\(info.name)\": shape \(describe(info.shape)) overflows")
          }
          elements = p
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: info.dtype.size)
        guard !overflow, info.end - info.begin == expected else {
          throw fail(
            "tensor \"\(info.name)\": data_offsets [\(info.begin), \(info.end)] hold \(info.end - info.begin) bytes, but \(info.dtype.rawValue) \(describe(info.shape)) needs \(elements) x \(info.dtype.size)"
          )
        }
        cursor = info.end
      }
      if cursor > dataLength {
        throw fail("truncated: the tensors need \(cursor) data bytes, the file holds \(dataLength)")
      }
      if cursor < dataLength {
        throw fail("the tensors cover \(cursor) of the \(dataLength) data bytes (trailing bytes)")
      }

      var tensors: [String: Tensor] = [:]
      var dtypes: [String: SafeTensorsDType] = [:]
      for info in infos {
        let t = Tensor(uninitializedShape: info.shape)
        let src = UnsafeRawBufferPointer(
          rebasing: raw[(dataStart + info.begin)..<(dataStart + info.end)])
        convert(src, info.dtype, into: t.mutableData, count: t.count)
        tensors[info.name] = t
        dtypes[info.name] = info.dtype
      }
      return SafeTensorsFile(
        tensors: tensors, dtypes: dtypes, metadata: metadata, names: infos.map(\.name))
    }
  }

  /// Converts `count` little-endian elements of `dtype` to Float32.
  static func convert(
    _ src: UnsafeRawBufferPointer, _ dtype: SafeTensorsDType, into dst: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    // loadUnaligned: offsets inside the file need not be aligned for the type.
    func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
      T(littleEndian: src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
    }
    switch dtype {
    case .bool, .u8: for i in 0..<count { dst[i] = Float(src[i]) }
    case .i8: for i in 0..<count { dst[i] = Float(Int8(bitPattern: src[i])) }
    case .f8e5m2: for i in 0..<count { dst[i] = float8E5M2(src[i]) }
    case .f8e4m3: for i in 0..<count { dst[i] = float8E4M3(src[i]) }
    case .i16: for i in 0..<count { dst[i] = Float(load(Int16.self, i)) }
    case .u16: for i in 0..<count { dst[i] = Float(load(UInt16.self, i)) }
    case .f16: for i in 0..<count { dst[i] = float16(load(UInt16.self, i)) }
    case .bf16:
      for i in 0..<count { dst[i] = Float(bitPattern: UInt32(load(UInt16.self, i)) << 16) }
    case .i32: for i in 0..<count { dst[i] = Float(load(Int32.self, i)) }
    case .u32: for i in 0..<count { dst[i] = Float(load(UInt32.self, i)) }
    case .f32:
      // The common case: a straight copy on little-endian machines.
      #if _endian(little)
        if count > 0 {
          UnsafeMutableRawPointer(dst).copyMemory(from: src.baseAddress!, byteCount: 4 * count)
        }
      #else
        for i in 0..<count { dst[i] = Float(bitPattern: load(UInt32.self, i)) }
      #endif
    case .f64: for i in 0..<count { dst[i] = Float(Double(bitPattern: load(UInt64.self, i))) }
    case .i64: for i in 0..<count { dst[i] = Float(load(Int64.self, i)) }
    case .u64: for i in 0..<count { dst[i] = Float(load(UInt64.self, i)) }
    }
  }

  /// IEEE half precision to single, done by hand so it works where `Float16` is unavailable.
  static func float16(_ h: UInt16) -> Float {
    let sign: Float = h & 0x8000 != 0 ? -1 : 1
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = Float(h & 0x3ff)
    switch exponent {
    case 0: return sign * mantissa * 0x1p-24
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default:
      return sign * (1 + mantissa / 1024)
        * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }
  }

  /// 8-bit float with 5 exponent bits (bias 15), IEEE-like: infinities and NaNs exist.
  static func float8E5M2(_ b: UInt8) -> Float { float16(UInt16(b) << 8) }

  /// 8-bit float with 4 exponent bits (bias 7) in the "fn" variant: no infinities, and only
  /// S.1111.111 is NaN.
  static func float8E4M3(_ b: UInt8) -> Float {
    let sign: Float = b & 0x80 != 0 ? -1 : 1
    let exponent = Int((b >> 3) & 0xf)
    let mantissa = Float(b & 0x7)
    if exponent == 15 && b & 0x7 == 7 { return .nan }
    if exponent == 0 { return sign * mantissa * 0x1p-9 }
    return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
  }

  // MARK: Writing

  /// Writes Float32 tensors, in the given order, with string metadata.
  public static func write(
    _ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL
  ) throws {
    try write(tensors.map { Entry($0.0, $0.1) }, metadata: metadata, to: url)
  }

  /// Writes `entries` with their element types (F32, F64, I64 or I32) and string metadata.
  ///
  /// The header lists the tensors in the given order. In the data buffer 8-byte types come
  /// first, so that every tensor is aligned to its element size (the header is padded with
  /// spaces to a multiple of 8). The file is written to a temporary file beside `url`, flushed
  /// to disk and renamed, so a reader (or a restart after a crash) never sees a half-written file.
  public static func write(
    _ entries: [Entry], metadata: [String: String] = [:], to url: URL
  ) throws {
    let data = try encode(entries, metadata: metadata, path: url.path)
    try AtomicFile.write(data, to: url)
  }

  /// The bytes of a safetensors file holding `entries`; `path` names it in errors.
  public static func encode(
    _ entries: [Entry], metadata: [String: String] = [:], path: String = "<memory>"
  ) throws -> Data {
    var names = Set<String>()
    for e in entries {
      guard names.insert(e.name).inserted else {
        throw TensorError.invalidFile(path: path, detail: "duplicate name \"\(e.name)\"")
      }
      guard e.name != "__metadata__" else {
        throw TensorError.invalidFile(path: path, detail: "\"__metadata__\" is reserved")
      }
      guard e.dtype.isWritable else {
        throw TensorError.invalidFile(
          path: path, detail: "tensor \"\(e.name)\": writing \(e.dtype.rawValue) is not supported")
      }
    }
    // Integer types: refuse what would not convert (NaN, out of range) before writing anything.
    for e in entries where e.dtype == .i64 || e.dtype == .i32 {
      let limit: Float = e.dtype == .i64 ? 9.2e18 : 2.1e9
      for j in 0..<e.tensor.count where !(abs(e.tensor.data[j]) < limit) {
        throw TensorError.invalidFile(
          path: path,
          detail: "tensor \"\(e.name)\": value \(e.tensor.data[j]) does not fit \(e.dtype.rawValue)"
        )
      }
    }
    // Data order: larger elements first (stable), so every offset is a multiple of its size.
    let dataOrder = entries.indices.sorted {
      (entries[$0].dtype.size, $1) > (entries[$1].dtype.size, $0)
    }
    var offsets = [(Int, Int)](repeating: (0, 0), count: entries.count)
    var cursor = 0
    for i in dataOrder {
      let bytes = entries[i].tensor.count * entries[i].dtype.size
      offsets[i] = (cursor, cursor + bytes)
      cursor += bytes
    }
    var header = "{"
    if !metadata.isEmpty {
      header += "\"__metadata__\":{"
      header += metadata.sorted { $0.key < $1.key }
        .map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
      header += "}"
      if !entries.isEmpty { header += "," }
    }
    header += entries.indices.map { i in
      let e = entries[i]
      let shape = e.tensor.shape.map(String.init).joined(separator: ",")
      return "\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],"
        + "\"data_offsets\":[\(offsets[i].0),\(offsets[i].1)]}"
    }.joined(separator: ",")
    header += "}"
    var headerBytes = Array(header.utf8)
    while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

    // One allocation for the whole file, filled in place.
    let dataStart = 8 + headerBytes.count
    var out = Data(count: dataStart + cursor)
    out.withUnsafeMutableBytes { (file: UnsafeMutableRawBufferPointer) in
      let start = file.baseAddress!
      start.storeBytes(of: UInt64(headerBytes.count).littleEndian, as: UInt64.self)
      headerBytes.withUnsafeBytes {
        (start + 8).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
      }
      for i in dataOrder {
        let e = entries[i]
        let base = start + dataStart + offsets[i].0
        let src = e.tensor.data
        let n = e.tensor.count
        switch e.dtype {
        case .f32:
          #if _endian(little)
            if n > 0 { base.copyMemory(from: src, byteCount: 4 * n) }
          #else
            for j in 0..<n {
              (base + 4 * j).storeBytes(of: src[j].bitPattern.littleEndian, as: UInt32.self)
            }
          #endif
        case .f64:
          for j in 0..<n {
            (base + 8 * j).storeBytes(of: Double(src[j]).bitPattern.littleEndian, as: UInt64.self)
          }
        case .i64:
          for j in 0..<n {
            (base + 8 * j).storeBytes(of: Int64(src[j].rounded()).littleEndian, as: Int64.self)
          }
        case .i32:
          for j in 0..<n {
            (base + 4 * j).storeBytes(of: Int32(src[j].rounded()).littleEndian, as: Int32.self)
          }
        default: preconditionFailure("checked above")
        }
      }
    }
    return out
  }

  /// A JSON string literal.
  static func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
      default: out.unicodeScalars.append(u)
      }
    }
    return out + "\""
  }
}

// MARK: - A strict JSON parser

/// A parsed JSON value; objects keep their members in order, duplicates included, so that the
/// reader can reject duplicate names (Foundation's parser silently keeps one).
enum JSONValue {
  case null
  case bool(Bool)
  case number(String)
  case string(String)
  case array([JSONValue])
  case object([(String, JSONValue)])

  /// The value as a list of non-negative integers that fit in `Int`, if it is one.
  var nonNegativeIntegers: [Int]? {
    guard case .array(let items) = self else { return nil }
    var result: [Int] = []
    for item in items {
      guard case .number(let text) = item, let v = Int(text), v >= 0 else { return nil }
      result.append(v)
    }
    return result
  }
}

/// RFC 8259 JSON, nothing more (no comments, no trailing commas, no NaN).
struct JSONParser {
  struct Failure: Error { let message: String }

  private let bytes: [UInt8]
  private var i = 0
  private var depth = 0

  static func parse(_ text: String) throws -> JSONValue {
    var p = JSONParser(bytes: Array(text.utf8))
    p.skipWhitespace()
    let v = try p.value()
    p.skipWhitespace()
    guard p.i == p.bytes.count else { throw p.failure("unexpected text after the value") }
    return v
  }

  private init(bytes: [UInt8]) { self.bytes = bytes }

  private func failure(_ message: String) -> Failure { Failure(message: "\(message) at byte \(i)") }

  private mutating func skipWhitespace() {
    while i < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[i]) { i += 1 }
  }

  private mutating func expect(_ literal: String) throws {
    let l = Array(literal.utf8)
    guard i + l.count <= bytes.count, Array(bytes[i..<(i + l.count)]) == l else {
      throw failure("expected \(literal)")
    }
    i += l.count
  }

  private mutating func value() throws -> JSONValue {
    guard i < bytes.count else { throw failure("unexpected end") }
    switch bytes[i] {
    case UInt8(ascii: "{"): return try object()
    case UInt8(ascii: "["): return try array()
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"):
      try expect("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expect("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expect("null")
      return .null
    default: return .number(try number())
    }
  }

  private mutating func nest() throws {
    depth += 1
    guard depth <= 64 else { throw failure("nesting too deep") }
  }

  private mutating func object() throws -> JSONValue {
    try nest()
    defer { depth -= 1 }
    i += 1
    var members: [(String, JSONValue)] = []
    skipWhitespace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
      i += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw failure("expected a key") }
      let key = try string()
      skipWhitespace()
      try expect(":")
      skipWhitespace()
      members.append((key, try value()))
      skipWhitespace()
      guard i < bytes.count else { throw failure("unterminated object") }
      if bytes[i] == UInt8(ascii: ",") {
        i += 1
        continue
      }
      try expect("}")
      return .object(members)
    }
  }

  private mutating func array() throws -> JSONValue {
    try nest()
    defer { depth -= 1 }
    i += 1
    var items: [JSONValue] = []
    skipWhitespace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
      i += 1
      return .array(items)
    }
    while true {
      skipWhitespace()
      items.append(try value())
      skipWhitespace()
      guard i < bytes.count else { throw failure("unterminated array") }
      if bytes[i] == UInt8(ascii: ",") {
        i += 1
        continue
      }
      try expect("]")
      return .array(items)
    }
  }

  private mutating func number() throws -> String {
    let start = i
    func digits() -> Int {
      let s = i
      while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
      return i - s
    }
    if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
    guard i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 else {
      throw failure("invalid value")
    }
    if bytes[i] == 0x30 { i += 1 } else { _ = digits() }
    if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
      i += 1
      guard digits() > 0 else { throw failure("invalid number") }
    }
    if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
      i += 1
      if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
      guard digits() > 0 else { throw failure("invalid number") }
    }
    return String(decoding: bytes[start..<i], as: UTF8.self)
  }

  private mutating func hex4() throws -> UInt32 {
    guard i + 4 <= bytes.count else { throw failure("truncated \\u escape") }
    var v: UInt32 = 0
    for _ in 0..<4 {
      let c = bytes[i]
      let d: UInt32
      switch c {
      case 0x30...0x39: d = UInt32(c - 0x30)
      case 0x41...0x46: d = UInt32(c - 0x41 + 10)
      case 0x61...0x66: d = UInt32(c - 0x61 + 10)
      default: throw failure("invalid \\u escape")
      }
      v = v * 16 + d
      i += 1
    }
    return v
  }

  private mutating func string() throws -> String {
    i += 1
    var out: [UInt8] = []
    while true {
      guard i < bytes.count else { throw failure("unterminated string") }
      let c = bytes[i]
      i += 1
      if c == UInt8(ascii: "\"") { break }
      guard c >= 0x20 else { throw failure("control character in a string") }
      guard c == UInt8(ascii: "\\") else {
        out.append(c)
        continue
      }
      guard i < bytes.count else { throw failure("unterminated escape") }
      let e = bytes[i]
      i += 1
      switch e {
      case UInt8(ascii: "\""): out.append(0x22)
      case UInt8(ascii: "\\"): out.append(0x5c)
      case UInt8(ascii: "/"): out.append(0x2f)
      case UInt8(ascii: "b"): out.append(0x08)
      case UInt8(ascii: "f"): out.append(0x0c)
      case UInt8(ascii: "n"): out.append(0x0a)
      case UInt8(ascii: "r"): out.append(0x0d)
      case UInt8(ascii: "t"): out.append(0x09)
      case UInt8(ascii: "u"):
        var scalar = try hex4()
        if (0xd800..<0xdc00).contains(scalar) {
          try expect("\\u")
          let low = try hex4()
          guard (0xdc00..<0xe000).contains(low) else { throw failure("unpaired surrogate") }
          scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
        } else if (0xdc00..<0xe000).contains(scalar) {
          throw failure("unpaired surrogate")
        }
        out.append(contentsOf: Array(String(Unicode.Scalar(scalar)!).utf8))
      default: throw failure("invalid escape")
      }
    }
    return String(decoding: out, as: UTF8.self)
  }
}
