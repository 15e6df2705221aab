// Shared by every fuzz target: scratch files for readers that take paths, and the seed writer.
//
// Each target file defines `fuzzOne(_:)` (one input) and `seedInputs()` (the named seed files the
// committed corpus holds); this file turns them into libFuzzer's entry points.

import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A per-process scratch folder, in memory when /dev/shm exists (the readers under test take paths).
enum Scratch {
  static let directory: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let path = (base as NSString).appendingPathComponent("acon-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
    return path
  }()

  /// Writes `bytes` to `name` in the scratch folder and returns its path.
  static func write<C: Collection<UInt8>>(_ bytes: C, name: String) -> String {
    let path = (directory as NSString).appendingPathComponent(name)
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
  }

  /// An empty folder `name` in the scratch folder (removed and made again).
  static func freshFolder(_ name: String) -> String {
    let path = (directory as NSString).appendingPathComponent(name)
    try? FileManager.default.removeItem(atPath: path)
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }
}

/// Fails the run (libFuzzer reports it as a crash) when a property of a decoded input breaks.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
  if !condition { fatalError("property broken: \(message())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  fuzzOne(bytes)
  return 0
}

/// With ACON_FUZZ_WRITE_SEEDS=DIR set, writes the target's seed inputs to DIR and exits
/// (scripts/fuzz/run.sh --seeds uses this to regenerate the committed corpus).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
  _ argc: UnsafeMutablePointer<CInt>?,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
  if let directory = ProcessInfo.processInfo.environment["ACON_FUZZ_WRITE_SEEDS"] {
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      for (name, bytes) in try seedInputs() {
        let path = (directory as NSString).appendingPathComponent(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        print("seed \(path) (\(bytes.count) bytes)")
      }
      exit(0)
    } catch {
      fputs("cannot write seeds: \(error)\n", stderr)
      exit(1)
    }
  }
  return 0
}
