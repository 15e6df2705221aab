import ACONKernels
import Foundation

/// A dense Float32 tensor in row-major (C) order; images are NCHW, as in PyTorch.
///
/// A tensor is a value: operations return new tensors and never change their inputs, so views
/// (`reshaped`, `narrowBatch`) can share storage safely. The only in-place changes are explicit
/// ops on storage the caller owns: optimizer steps and counters on a ``Parameter``, running
/// statistics inside the batch norm ops.
/// A tensor produced while gradients are recorded carries a ``GradNode``; `backward()` on a
/// scalar result fills the gradients of the parameters it depends on.
public struct Tensor: CustomStringConvertible {
  /// Sizes of the dimensions, outermost first.
  public let shape: [Int]
  /// The memory the elements live in.
  public internal(set) var storage: TensorStorage
  /// Index of the first element inside `storage`.
  public let offset: Int
  /// The operation that produced this tensor, when gradients are being recorded through it.
  public internal(set) var node: GradNode?

  /// Number of elements.
  public var count: Int { shape.reduce(1, *) }
  /// Number of dimensions.
  public var rank: Int { shape.count }
  /// Row-major strides, in elements.
  public var strides: [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for d in stride(from: shape.count - 1, through: 0, by: -1) {
      s[d] = acc
      acc *= shape[d]
    }
    return s
  }
  /// Whether gradients flow back through this tensor.
  public var requiresGrad: Bool { node != nil }

  /// A tensor over existing storage (no copy).
  public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
    precondition(offset + shape.reduce(1, *) <= storage.count, "view exceeds storage")
    self.shape = shape
    self.storage = storage
    self.offset = offset
    self.node = nil
  }

  /// A tensor with fresh pooled storage on `device` and undefined contents; the caller fills
  /// every element.
  public init(uninitializedShape shape: [Int], device: Device = .current) {
    let n = shape.reduce(1, *)
    self.init(shape: shape, storage: TensorStorage(count: n, device: device))
  }

  /// A tensor filled with `value`, on `device`.
  public init(shape: [Int], repeating value: Float, device: Device = .current) {
    self.init(uninitializedShape: shape, device: device)
    device.backend.fill(self, with: value)
  }

  /// A tensor holding `values` in row-major order, on `device`.
  public init(shape: [Int], values: [Float], device: Device = .current) {
    precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
    self.init(uninitializedShape: shape, device: device)
    values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: count) }
  }

  /// A 0-d tensor holding one value.
  public init(scalar: Float) { self.init(shape: [], values: [scalar]) }

  /// Zeros.
  public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }
  /// Ones.
  public static func ones(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 1) }

  /// Normal samples with the given mean and standard deviation.
  public static func randomNormal(
    _ shape: [Int], mean: Float = 0, std: Float = 1, using rng: inout RandomGenerator
  ) -> Tensor {
    let t = Tensor(uninitializedShape: shape)
    let p = t.storage.pointer
    for i in 0..<t.count { p[i] = mean + std * rng.nextNormal() }
    return t
  }

  /// Uniform samples in `[low, high)`.
  public static func randomUniform(
    _ shape: [Int], low: Float = 0, high: Float = 1, using rng: inout RandomGenerator
  ) -> Tensor {
    let t = Tensor(uninitializedShape: shape)
    let p = t.storage.pointer
    for i in 0..<t.count { p[i] = low + (high - low) * rng.nextUniform() }
    return t
  }

  /// Pointer to the first element, for reading (kernel layer and backends only).
  package var data: UnsafePointer<Float> { UnsafePointer(storage.pointer + offset) }

  /// Pointer to the first element, for writing into a tensor whose storage the caller owns
  /// (a freshly made result, a parameter, a running statistic); kernel layer and backends only.
  package var mutableData: UnsafeMutablePointer<Float> { storage.pointer + offset }

  // Values enter and leave a device only through `init(shape:values:)`, the random
  // initialisers and `scalars`: both backends keep host memory, so these read and write it
  // directly (a device backend would upload and download here).

  /// The elements as an array, in row-major order.
  public var scalars: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

  /// The single element of a one-element tensor.
  public var item: Float {
    precondition(count == 1, "item of a tensor of shape \(shape)")
    return data[0]
  }

  /// The same elements, detached from gradient recording.
  public var detached: Tensor {
    var t = self
    t.node = nil
    return t
  }

  /// A copy with its own storage on the same device (detached from gradients).
  public func copy() -> Tensor {
    let t = empty(shape)
    device.backend.copy(self, into: t)
    return t
  }

  public var description: String {
    let preview = scalars.prefix(8).map { String(format: "%.4f", $0) }.joined(separator: ", ")
    return "Tensor(\(describe(shape)), [\(preview)\(count > 8 ? ", ..." : "")])"
  }
}
