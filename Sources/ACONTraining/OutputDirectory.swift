import ACONTensor
import Foundation

/// The run's output folder: made when missing, checked for writing before training starts, and
/// cleared of temporary files that a killed run left behind.
enum OutputDirectory {
  /// The files the trainer writes atomically (their temporaries are `.NAME.PID.RANDOM.tmp`).
  static let atomicallyWritten = ["checkpoint.safetensors", "model.safetensors"]

  static func prepare(_ url: URL, removingStaleTemporaries: Bool) throws {
    if let code = makeFolders(url.standardizedFileURL.path) {
      throw TrainingError.outputFailed(
        "cannot create the output folder \(url.path): \(String(cString: strerror(code)))")
    }
    guard access(url.path, W_OK | X_OK) == 0 else {
      throw TrainingError.outputFailed(
        "cannot write to the output folder \(url.path): \(String(cString: strerror(errno)))")
    }
    if removingStaleTemporaries {
      for name in atomicallyWritten { AtomicFile.removeStaleTemporaries(of: name, in: url) }
    }
  }

  /// `mkdir -p`: makes `path` and its missing parents; returns the failing call's errno, if any
  /// (Foundation's error for a parent that is a file names no reason).
  static func makeFolders(_ path: String) -> Int32? {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
      current += "/" + component
      if mkdir(current, 0o755) != 0 {
        let code = errno
        guard code == EEXIST else { return code }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: current, isDirectory: &isFolder),
          isFolder.boolValue
        else {
          return ENOTDIR
        }
      }
    }
    return nil
  }

  /// The system's reason behind a Foundation error ("Not a directory", "Read-only file system").
  static func reason(_ error: Error) -> String {
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError,
      underlying.domain == NSPOSIXErrorDomain
    {
      return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    return error.localizedDescription
  }
}
