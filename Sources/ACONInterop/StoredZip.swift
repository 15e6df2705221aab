/// The zip archives `torch.save` writes (since PyTorch 1.6): every entry stored, never
/// compressed, sometimes with ZIP64 records. Reading and writing need only the central
/// directory, the local headers and CRC-32, so the module carries its own small codec instead of
/// a zip library: no dependency, and every malformation becomes an ``InteropError`` that says
/// what is wrong. Deflated entries (a checkpoint re-zipped by hand) are refused by name.
///
/// Source: PKWARE's APPNOTE.TXT (sections 4.3 and 4.5: headers, ZIP64 extra field and records).
public struct StoredZipArchive {
  /// One file of the archive.
  public struct Entry: Equatable {
    public let name: String
    /// Where the entry's bytes start in the archive and how many there are.
    public let dataOffset: Int
    public let size: Int
    public let crc32: UInt32
  }

  /// The archive's entries in central-directory order.
  public let entries: [Entry]
  private let bytes: [UInt8]
  private let path: String

  /// Whether `bytes` start like a zip archive (a local file header).
  public static func looksLikeZip(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B && bytes[2] == 0x03 && bytes[3] == 0x04
  }

  /// Parses the central directory of `bytes`; `path` names the file in errors.
  public init(bytes: [UInt8], path: String) throws {
    self.bytes = bytes
    self.path = path
    let reader = ByteReader(bytes, path: path)
    func fail(_ detail: String) -> InteropError {
      InteropError(path, "not a valid zip archive: \(detail)")
    }

    // The end-of-central-directory record: 22 bytes plus a comment of at most 65535.
    let signature: [UInt8] = [0x50, 0x4B, 0x05, 0x06]
    guard bytes.count >= 22 else { throw fail("\(bytes.count) bytes is too short (truncated?)") }
    var end = -1
    var position = bytes.count - 22
    let lowest = max(0, bytes.count - 22 - 65_535)
    while position >= lowest {
      if bytes[position] == 0x50, Array(bytes[position..<position + 4]) == signature {
        end = position
        break
      }
      position -= 1
    }
    guard end >= 0 else { throw fail("no end-of-central-directory record (truncated?)") }
    var entryCount = Int(try reader.u16(at: end + 10))
    var directorySize = Int(try reader.u32(at: end + 12))
    var directoryOffset = Int(try reader.u32(at: end + 16))
    if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
      // ZIP64: a locator just before the record points at the ZIP64 end record.
      let locator = end - 20
      guard locator >= 0, try reader.u32(at: locator) == 0x0706_4B50 else {
        throw fail("ZIP64 sizes without a ZIP64 locator")
      }
      let record = try reader.offset(try reader.u64(at: locator + 8))
      guard try reader.u32(at: record) == 0x0606_4B50 else { throw fail("bad ZIP64 end record") }
      entryCount = try reader.offset(try reader.u64(at: record + 32))
      directorySize = try reader.offset(try reader.u64(at: record + 40))
      directoryOffset = try reader.offset(try reader.u64(at: record + 48))
    }
    guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
      throw fail("the central directory lies beyond the end of the file (truncated?)")
    }

    var entries: [Entry] = []
    var cursor = directoryOffset
    for index in 0..<entryCount {
      guard try reader.u32(at: cursor) == 0x0201_4B50 else {
        throw fail("central directory entry \(index) has a bad signature")
      }
      let method = try reader.u16(at: cursor + 10)
      let crc = try reader.u32(at: cursor + 16)
      var compressedSize = UInt64(try reader.u32(at: cursor + 20))
      var size = UInt64(try reader.u32(at: cursor + 24))
      let nameLength = Int(try reader.u16(at: cursor + 28))
      let extraLength = Int(try reader.u16(at: cursor + 30))
      let commentLength = Int(try reader.u16(at: cursor + 32))
      var localOffset = UInt64(try reader.u32(at: cursor + 42))
      let name = String(decoding: try reader.slice(cursor + 46, nameLength), as: UTF8.self)
      // ZIP64 extended information (tag 1): the 64-bit values of the fields set to all ones,
      // in the order size, compressed size, offset.
      var extra = cursor + 46 + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let tag = try reader.u16(at: extra)
        let length = Int(try reader.u16(at: extra + 2))
        if tag == 1 {
          var field = extra + 4
          if size == 0xFFFF_FFFF {
            size = try reader.u64(at: field)
            field += 8
          }
          if compressedSize == 0xFFFF_FFFF {
            compressedSize = try reader.u64(at: field)
            field += 8
          }
          if localOffset == 0xFFFF_FFFF { localOffset = try reader.u64(at: field) }
        }
        extra += 4 + length
      }
      guard method == 0 else {
        throw fail(
          "entry \(name) is compressed (method \(method)); checkpoints written by torch.save store "
            + "their entries uncompressed")
      }
      guard compressedSize == size else {
        throw fail("entry \(name) is stored but its sizes differ")
      }
      let header = try reader.offset(localOffset)
      guard try reader.u32(at: header) == 0x0403_4B50 else {
        throw fail("entry \(name) has no local header at offset \(header)")
      }
      let dataOffset =
        header + 30 + Int(try reader.u16(at: header + 26)) + Int(try reader.u16(at: header + 28))
      let count = try reader.offset(size)
      guard dataOffset <= bytes.count, count <= bytes.count - dataOffset else {
        throw fail("entry \(name) runs past the end of the file (truncated?)")
      }
      entries.append(Entry(name: name, dataOffset: dataOffset, size: count, crc32: crc))
      cursor += 46 + nameLength + extraLength + commentLength
    }
    self.entries = entries
  }

  /// The entry called `name`, if any.
  public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

  /// The bytes of `entry`, checked against its CRC-32.
  public func contents(of entry: Entry) throws -> ArraySlice<UInt8> {
    let data = bytes[entry.dataOffset..<entry.dataOffset + entry.size]
    guard CRC32.checksum(data) == entry.crc32 else {
      throw InteropError(
        path, "not a valid zip archive: entry \(entry.name) fails its CRC-32 check (corrupt file)")
    }
    return data
  }

  /// A zip archive of stored entries, as `torch.save` writes it: each entry's data starts on a
  /// multiple of 64 bytes (padding in the local header's extra field), which PyTorch's reader
  /// prefers for memory-mapping. No ZIP64 records: archives over 4 GiB are refused.
  public static func write(_ files: [(name: String, data: [UInt8])], path: String) throws -> [UInt8]
  {
    var out: [UInt8] = []
    var directory: [UInt8] = []
    for file in files {
      let offset = out.count
      let name = Array(file.name.utf8)
      let crc = CRC32.checksum(file.data[...])
      // Padding record (tag 0x4246, as PyTorch's writer uses) to align the data to 64 bytes.
      var padding = (64 - (offset + 30 + name.count + 4) % 64) % 64
      let extraLength = padding + 4
      out += le32(0x0403_4B50) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0)
      out += le32(crc) + le32(UInt32(file.data.count)) + le32(UInt32(file.data.count))
      out += le16(UInt16(name.count)) + le16(UInt16(extraLength)) + name
      out += le16(0x4246) + le16(UInt16(padding))
      while padding > 0 {
        out.append(0x5A)
        padding -= 1
      }
      out += file.data
      directory += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0)
      directory += le32(crc) + le32(UInt32(file.data.count)) + le32(UInt32(file.data.count))
      directory += le16(UInt16(name.count)) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
      directory += le32(UInt32(offset)) + name
      guard out.count < Int(UInt32.max) else {
        throw InteropError(path, "archives over 4 GiB are not supported")
      }
    }
    let directoryOffset = out.count
    out += directory
    out +=
      le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(files.count)) + le16(UInt16(files.count))
    out += le32(UInt32(directory.count)) + le32(UInt32(directoryOffset)) + le16(0)
    return out
  }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }

/// Bounds-checked little-endian reads from a byte array; running off the end is an error that
/// calls the file truncated.
struct ByteReader {
  let bytes: [UInt8]
  let path: String

  init(_ bytes: [UInt8], path: String) {
    self.bytes = bytes
    self.path = path
  }

  private func need(_ position: Int, _ count: Int) throws {
    guard position >= 0, count >= 0, position <= bytes.count, count <= bytes.count - position else {
      throw InteropError(path, "unexpected end of file at byte \(position) (truncated or corrupt)")
    }
  }

  func slice(_ position: Int, _ count: Int) throws -> ArraySlice<UInt8> {
    try need(position, count)
    return bytes[position..<position + count]
  }

  func u16(at p: Int) throws -> UInt16 {
    try need(p, 2)
    return UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8
  }

  func u32(at p: Int) throws -> UInt32 {
    try need(p, 4)
    var v: UInt32 = 0
    for i in 0..<4 { v |= UInt32(bytes[p + i]) << (8 * UInt32(i)) }
    return v
  }

  func u64(at p: Int) throws -> UInt64 {
    try need(p, 8)
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(bytes[p + i]) << (8 * UInt64(i)) }
    return v
  }

  /// A 64-bit offset or size as an `Int` within the file, or an error.
  func offset(_ v: UInt64) throws -> Int {
    guard v <= UInt64(bytes.count) else {
      throw InteropError(path, "offset \(v) lies beyond the end of the file (truncated or corrupt)")
    }
    return Int(v)
  }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the zip format's checksum.
enum CRC32 {
  static let table: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
  }

  static func checksum(_ data: ArraySlice<UInt8>) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in data { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
  }
}
