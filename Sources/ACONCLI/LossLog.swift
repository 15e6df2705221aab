import Foundation

/// `acon train --loss-log FILE`: every iteration's number and loss, one `ITERATION LOSS` line each,
/// the loss written exactly (the shortest decimal that reads back as the same Float), so that two
/// runs, or a run and its resumption, can be compared bit for bit.
final class LossLog {
  private let handle: FileHandle

  /// Opens `path` for appending (creating it).
  init(path: String) throws {
    if !FileManager.default.fileExists(atPath: path) {
      guard FileManager.default.createFile(atPath: path, contents: nil) else {
        throw CLIError("cannot create the loss log \(path)")
      }
    }
    guard let handle = FileHandle(forWritingAtPath: path) else {
      throw CLIError("cannot open the loss log \(path) for writing")
    }
    handle.seekToEndOfFile()
    self.handle = handle
  }

  deinit { try? handle.close() }

  /// Appends one line (unbuffered: a killed run keeps every line it logged).
  func append(iteration: Int, loss: Float) {
    handle.write(Data("\(iteration) \(loss)\n".utf8))
  }
}
