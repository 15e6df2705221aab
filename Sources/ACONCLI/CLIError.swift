import ArgumentParser
import Foundation

/// An error the tool reports as one line on standard error, exiting with status 1.
struct CLIError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Writes a line to standard error.
func standardError(_ line: String) {
  FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}
