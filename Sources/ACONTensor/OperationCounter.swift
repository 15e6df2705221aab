#if canImport(Glibc)
  import Glibc
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

  private static let key: pthread_key_t = {
    var k = pthread_key_t()
    pthread_key_create(&k, nil)
    return k
  }()

  private final class Box { var records: [Record] = [] }

  /// Runs `body`, returning what it produced and every conv/linear operation it ran.
  public static func counting<T>(_ body: () throws -> T) rethrows -> (T, [Record]) {
    let previous = pthread_getspecific(key)
    let box = Box()
    let unmanaged = Unmanaged.passRetained(box)
    pthread_setspecific(key, unmanaged.toOpaque())
    defer {
      pthread_setspecific(key, previous)
      unmanaged.release()
    }
    let result = try body()
    return (result, box.records)
  }

  /// Called by the conv and linear ops.
  public static func add(_ operation: String, weight: Tensor?, outputShape: [Int], macs: Int) {
    guard let raw = pthread_getspecific(key) else { return }
    Unmanaged<Box>.fromOpaque(raw).takeUnretainedValue().records.append(
      Record(
        operation: operation, outputShape: outputShape, macs: macs,
        weightStorage: weight.map { ObjectIdentifier($0.storage) }))
  }
}
