/// An error raised by a tensor operation, a layer or a file reader.
///
/// Shape errors name the operation and the shapes involved, so that a wrong network definition
/// or a wrong input is reported instead of crashing.
public enum TensorError: Error, CustomStringConvertible, Equatable {
  /// The shapes given to `operation` do not fit; `detail` says why.
  case shapeMismatch(operation: String, shapes: [[Int]], detail: String)
  /// An argument is out of its valid range.
  case invalidArgument(operation: String, detail: String)
  /// A file could not be read or is malformed.
  case invalidFile(path: String, detail: String)

  public var description: String {
    switch self {
    case .shapeMismatch(let op, let shapes, let detail):
      let s = shapes.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }
        .joined(separator: " and ")
      return "\(op): shapes \(s) do not fit: \(detail)"
    case .invalidArgument(let op, let detail):
      return "\(op): \(detail)"
    case .invalidFile(let path, let detail):
      return "\(path): \(detail)"
    }
  }
}

/// Formats a shape as PyTorch prints it: `[32, 64, 56, 56]`.
public func describe(_ shape: [Int]) -> String {
  "[" + shape.map(String.init).joined(separator: ", ") + "]"
}
