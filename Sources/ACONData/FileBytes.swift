import ACONTensor
import CZlib
import Foundation

/// Reading whole data files into memory, gzip-compressed or not.
public enum FileBytes {
  /// The bytes of the file at `path`; a gzip file (magic `1f 8b`) is inflated transparently.
  ///
  /// Throws `TensorError.invalidFile` for a missing or unreadable file and for a
  /// corrupt or truncated gzip stream.
  public static func read(_ path: String) throws -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else {
      throw TensorError.invalidFile(path: path, detail: "file not found")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw TensorError.invalidFile(path: path, detail: "file could not be read")
    }
    let bytes = [UInt8](data)
    if bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
      return try gunzip(bytes, path: path)
    }
    return bytes
  }

  /// Inflates a gzip stream (possibly several members concatenated, as `gzip` allows).
  static func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    // The trailer's ISIZE is the uncompressed size mod 2^32: a good first capacity, but only a
    // claim: deflate expands at most 1032-fold, so a larger ISIZE is not trusted (a corrupt
    // 20-byte file must not allocate 4 GB before inflating a byte).
    var capacity = input.count * 4
    if input.count >= 18 {
      let n = input.count
      let isize =
        Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1])
        << 24
      if isize > 0 { capacity = min(isize + 1, input.count * 1032 + 1) }
    }
    var output = [UInt8](repeating: 0, count: max(capacity, 1024))
    var produced = 0
    var stream = z_stream()
    // 15 window bits + 16: gzip wrapper only.
    guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
    else { throw TensorError.invalidFile(path: path, detail: "zlib could not be initialised") }
    defer { inflateEnd(&stream) }
    var consumed = 0
    var status: Int32 = Z_OK
    try input.withUnsafeBufferPointer { inBuf in
      while true {
        if produced == output.count { output += [UInt8](repeating: 0, count: output.count) }
        stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress! + consumed)
        let availIn = UInt32(min(inBuf.count - consumed, Int(UInt32.max)))
        let availOut = UInt32(min(output.count - produced, Int(UInt32.max)))
        stream.avail_in = availIn
        status = output.withUnsafeMutableBufferPointer { outBuf in
          stream.next_out = outBuf.baseAddress! + produced
          stream.avail_out = availOut
          return inflate(&stream, Z_NO_FLUSH)
        }
        consumed += Int(availIn - stream.avail_in)
        produced += Int(availOut - stream.avail_out)
        if status == Z_STREAM_END {
          // Another gzip member may follow; anything else after the stream is ignored, as gzip does.
          if consumed + 2 <= inBuf.count && inBuf[consumed] == 0x1F && inBuf[consumed + 1] == 0x8B {
            guard inflateReset(&stream) == Z_OK else { break }
            continue
          }
          break
        }
        if status == Z_BUF_ERROR && consumed >= inBuf.count {
          throw TensorError.invalidFile(
            path: path, detail: "gzip stream is truncated (ends after \(produced) inflated bytes)")
        }
        if status != Z_OK && status != Z_BUF_ERROR {
          let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
          throw TensorError.invalidFile(path: path, detail: "corrupt gzip stream: \(message)")
        }
        if consumed >= inBuf.count && stream.avail_out > 0 {
          throw TensorError.invalidFile(
            path: path, detail: "gzip stream is truncated (ends after \(produced) inflated bytes)")
        }
      }
    }
    output.removeSubrange(produced...)
    return output
  }
}
