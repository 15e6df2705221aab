/// A file this module cannot read or write, or a model it cannot export: `description` names
/// the file (or the model) and the problem in one line, for the command line's stderr.
public struct InteropError: Error, CustomStringConvertible, Equatable {
  /// The file or model concerned.
  public let subject: String
  /// What is wrong with it.
  public let detail: String

  public init(_ subject: String, _ detail: String) {
    self.subject = subject
    self.detail = detail
  }

  public var description: String { "\(subject): \(detail)" }
}
