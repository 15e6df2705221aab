import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// write(2) (inside `AtomicFile` the name `write` is its own method).
private func writeToDescriptor(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  #if canImport(Glibc)
    return Glibc.write(fd, bytes, count)
  #else
    return Darwin.write(fd, bytes, count)
  #endif
}

/// Whole-file writes that a crash, a kill or a full disk cannot leave half done: the bytes go to a
/// temporary file beside the destination (`.NAME.PID.RANDOM.tmp`), are flushed to disk, and the
/// temporary file is renamed over the destination. Until the rename the old file stays as it was;
/// on any failure the temporary file is removed and the error names the destination and the
/// system's reason (for example "No space left on device").
public enum AtomicFile {
  /// Writes `data` to `url` atomically.
  public static func write(_ data: Data, to url: URL) throws {
    let path = url.path
    let directory = url.deletingLastPathComponent().path
    func failure(_ what: String, _ code: Int32) -> TensorError {
      var detail = "\(what): \(String(cString: strerror(code)))"
      if code == ENOENT || code == ENOTDIR {
        detail += " (does the folder \(directory) still exist?)"
      } else if code == ENOSPC || code == EDQUOT {
        detail += " (any previous \(url.lastPathComponent) is left as it was)"
      }
      return TensorError.invalidFile(path: path, detail: detail)
    }
    let temporary =
      (directory as NSString).appendingPathComponent(
        ".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("cannot create a file in \(directory)", errno) }
    var written = 0
    var code: Int32 = 0
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      while written < raw.count {
        let n = writeToDescriptor(fd, raw.baseAddress! + written, raw.count - written)
        if n < 0 {
          if errno == EINTR { continue }
          code = errno
          return
        }
        written += n
      }
    }
    // On disk before the rename, so that a crash leaves the old file or the new one, whole.
    if code == 0 && fsync(fd) != 0 { code = errno }
    if close(fd) != 0 && code == 0 { code = errno }
    if code != 0 {
      unlink(temporary)
      throw failure("cannot write \(data.count) bytes", code)
    }
    // rename(2) replaces the destination atomically.
    guard rename(temporary, path) == 0 else {
      let renameError = errno
      unlink(temporary)
      throw failure("cannot rename the temporary file over it", renameError)
    }
    // The rename itself reaches the disk with the folder's entry.
    let folder = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if folder >= 0 {
      _ = fsync(folder)
      close(folder)
    }
  }

  /// Removes temporary files that an interrupted ``write(_:to:)`` of `name` left in `directory`
  /// (a process killed between creating and renaming them). Only files of processes no longer
  /// running are removed, so a concurrent writer's file is left alone.
  public static func removeStaleTemporaries(of name: String, in directory: URL) {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else {
      return
    }
    let prefix = ".\(name)."
    for entry in entries where entry.hasPrefix(prefix) && entry.hasSuffix(".tmp") {
      let fields = entry.dropFirst(prefix.count).split(separator: ".")
      guard fields.count == 3, let pid = Int32(fields[0]) else { continue }
      if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
        unlink(directory.appendingPathComponent(entry).path)
      }
    }
  }
}
