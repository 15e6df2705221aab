import ACONData
import CZlib
import Foundation
import Testing

/// A fresh temporary directory for one test, removed when the value is dropped.
final class TemporaryDirectory {
  let path: String

  init() throws {
    path = (NSTemporaryDirectory() as NSString).appendingPathComponent(
      "acon-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  deinit { try? FileManager.default.removeItem(atPath: path) }

  /// The path of `name` inside the directory (creating intermediate folders).
  func file(_ name: String) -> String {
    let p = (path as NSString).appendingPathComponent(name)
    try? FileManager.default.createDirectory(
      atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    return p
  }

  /// Writes `bytes` to `name`, gzip-compressed when `gzip`; returns the path.
  @discardableResult
  func write(_ name: String, _ bytes: [UInt8], gzip: Bool = false) throws -> String {
    let p = file(name)
    if gzip {
      guard let f = gzopen(p, "wb") else { throw CocoaError(.fileWriteUnknown) }
      let written = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
      gzclose(f)
      #expect(Int(written) == bytes.count)
    } else {
      try Data(bytes).write(to: URL(fileURLWithPath: p))
    }
    return p
  }
}

/// An IDX file of unsigned bytes: magic `00 00 08 <dims.count>`, big-endian sizes, then data.
func idxBytes(dims: [Int], data: [UInt8], magic: [UInt8]? = nil) -> [UInt8] {
  var out = magic ?? [0, 0, 0x08, UInt8(dims.count)]
  for d in dims {
    out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)]
  }
  return out + data
}

/// The message of the error `body` throws (failing the test when it does not throw).
func errorMessage(_ body: () throws -> Void) -> String {
  do {
    try body()
    Issue.record("expected an error")
    return ""
  } catch {
    return "\(error)"
  }
}
