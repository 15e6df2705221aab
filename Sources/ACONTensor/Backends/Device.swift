/// Where a tensor's storage lives and which ``ComputeBackend`` runs the ops on it.
///
/// Every op runs on the device of its inputs (they must share one) and makes its results there.
/// New tensors that have no input to follow (`Tensor(shape:values:)`, `zeros`, random tensors, a
/// layer's parameters) go to ``Device/current``: ``Device/cpu`` unless a caller chose another with
/// ``withDefaultDevice(_:_:)``. Both backends in this package keep storage in host memory; a
/// device backend (CUDA) would add its storage behind the same handles.
public struct Device: Hashable, Sendable, CustomStringConvertible {
  /// The backend that runs ops on this device's tensors.
  public let backend: any ComputeBackend

  /// A device served by `backend`; two devices are equal when they share the backend instance.
  public init(_ backend: any ComputeBackend) { self.backend = backend }

  /// The vectorised, multi-threaded CPU kernels of `ACONKernels`.
  public static let cpu = Device(CPUBackend())

  /// The device new tensors go to when no input decides (``Device/cpu`` by default).
  public static var current: Device { defaultDevice }

  @TaskLocal static var defaultDevice: Device = .cpu

  public static func == (a: Device, b: Device) -> Bool { a.backend === b.backend }
  public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(backend)) }
  public var description: String { backend.name }
}

/// Runs `body` with `device` as ``Device/current``: the tensors it creates without inputs (data,
/// parameters of layers built inside it) live there, and so do the results of ops on them.
public func withDefaultDevice<T>(_ device: Device, _ body: () throws -> T) rethrows -> T {
  try Device.$defaultDevice.withValue(device, operation: body)
}

extension Tensor {
  /// The device this tensor's storage lives on.
  public var device: Device { storage.device }

  /// The backend of the device the inputs share.
  ///
  /// Tensors of different devices in one op are a programming error (move one with
  /// ``Tensor/to(_:)``), reported by a precondition naming the op.
  @inline(__always)
  static func backend(_ op: String, _ tensors: Tensor?...) -> any ComputeBackend {
    var device: Device? = nil
    for t in tensors {
      guard let t else { continue }
      if let device {
        precondition(
          t.device == device,
          "\(op): inputs on devices \(device) and \(t.device); move them with to(_:)")
      } else {
        device = t.device
      }
    }
    return (device ?? .current).backend
  }

  /// A tensor of `shape` with undefined contents on this tensor's device.
  @inline(__always)
  func empty(_ shape: [Int]) -> Tensor { Tensor(uninitializedShape: shape, device: device) }

  /// A copy of this tensor on `device` (this tensor itself, detached from nothing, when it is
  /// already there). Gradients do not flow through the move.
  public func to(_ device: Device) -> Tensor {
    if device == self.device { return self }
    let out = Tensor(uninitializedShape: shape, device: device)
    // Both backends keep host memory: a plain copy moves the values.
    out.mutableData.update(from: data, count: count)
    return out
  }
}
