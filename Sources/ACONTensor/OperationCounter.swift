#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Counts the multiply-accumulates of convolution and linear layers during a forward pass
/// (the paper's "FLOPs" column: no bias, normalisation, activation or pooling terms).
///
/// Counting is off unless a `counting` scope is active on the calling thread.
public enum OperationCounter {
  /// One counted operation: its name, output shape and multiply-accumulates.
  public struct Record: Sendable {
    public let operation: String
    public let outputShape: [Int]
    public let macs: Int
    /// The storage of the operation's weight, to find the parameter's name.
    public let weightStorage: ObjectIdentifier?
  }

  /// The records of the innermost `counting` scope; only its own thread appends to it.
  private final class Box: @unchecked Sendable { var records: [Record] = [] }

  @TaskLocal private static var scope: Box?

  /// Runs `body`, returning what it produced and every conv/linear operation it ran.
  public static func counting<T>(_ body: () throws -> T) rethrows -> (T, [Record]) {
    let box = Box()
    let result = try $scope.withValue(box, operation: body)
    return (result, box.records)
  }

  /// Called by the conv and linear ops.
  public static func add(_ operation: String, weight: Tensor?, outputShape: [Int], macs: Int) {
    guard let box = scope else { return }
    box.records.append(
      Record(
        operation: operation, outputShape: outputShape, macs: macs,
        weightStorage: weight.map { ObjectIdentifier($0.storage) }))
  }
}
