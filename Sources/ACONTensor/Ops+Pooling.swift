import ACONKernels

/// Differentiable 2-D pooling over `[N, C, H, W]` tensors with square windows, as PyTorch's
/// `F.max_pool2d` and `F.avg_pool2d` with `ceil_mode = false`.
extension Tensor {
  /// Checks the arguments of a pooling op and returns its geometry.
  static func poolGeometry(
    _ op: String, _ x: Tensor, kernelSize: Int, stride: Int?, padding: Int
  ) throws -> PoolGeometry {
    guard x.rank == 4 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape], detail: "expects [N, C, H, W] input")
    }
    let s = stride ?? kernelSize
    guard kernelSize > 0, s > 0, padding >= 0 else {
      throw TensorError.invalidArgument(
        operation: op,
        detail:
          "kernel size \(kernelSize) and stride \(s) must be positive, padding \(padding) >= 0")
    }
    guard 2 * padding <= kernelSize else {
      throw TensorError.invalidArgument(
        operation: op,
        detail: "padding \(padding) must be at most half of the kernel size \(kernelSize)")
    }
    let g = PoolGeometry(
      height: x.shape[2], width: x.shape[3], kernel: kernelSize, stride: s, padding: padding)
    guard x.shape[2] + 2 * padding >= kernelSize, x.shape[3] + 2 * padding >= kernelSize else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape],
        detail: "kernel \(kernelSize) is larger than the padded input "
          + "(\(x.shape[2] + 2 * padding) x \(x.shape[3] + 2 * padding))")
    }
    return g
  }

  /// Max pooling with a `kernelSize x kernelSize` window, `stride` (default: the kernel size)
  /// and zero or more rows of `padding` that never win (they count as -infinity).
  ///
  /// The pullback keeps the position of each window's maximum (4 bytes per output) and sends
  /// the gradient there; ties go to the first position, as in PyTorch. Where no gradient is
  /// recorded (inference) no positions are kept.
  public static func maxPool2d(
    _ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0
  ) throws -> Tensor {
    let g = try poolGeometry(
      "maxPool2d", x, kernelSize: kernelSize, stride: stride, padding: padding)
    let (n, c) = (x.shape[0], x.shape[1])
    let outShape = [n, c, g.outputHeight, g.outputWidth]
    let backend = x.device.backend
    let out = x.empty(outShape)
    guard GradientMode.isEnabled && x.node != nil else {
      // Nothing will route a gradient back: no positions of the maxima. (`record` attaches no
      // tape entry here; it marks the op for the profiler.)
      backend.maxPoolForward(x, planes: n * c, geometry: g, into: out)
      return record("maxPool2d", output: out, inputs: [x]) { _ in [nil] }
    }
    // Pooled storage, so that a training loop's indices allocate nothing after its first step.
    let indices = x.empty(outShape)
    backend.maxPoolForward(x, planes: n * c, geometry: g, into: out, indices: indices)
    let inShape = x.shape
    return record("maxPool2d", output: out, inputs: [x]) { grad in
      let dx = grad.empty(inShape)
      backend.maxPoolBackward(grad, indices: indices, planes: n * c, geometry: g, into: dx)
      return [dx]
    }
  }

  /// Average pooling with a `kernelSize x kernelSize` window, `stride` (default: the kernel
  /// size) and zero `padding`; padded positions count in the divisor (`count_include_pad`),
  /// so every window divides by `kernelSize^2`. The pullback keeps nothing but the geometry.
  public static func avgPool2d(
    _ x: Tensor, kernelSize: Int, stride: Int? = nil, padding: Int = 0
  ) throws -> Tensor {
    let g = try poolGeometry(
      "avgPool2d", x, kernelSize: kernelSize, stride: stride, padding: padding)
    let (n, c) = (x.shape[0], x.shape[1])
    let backend = x.device.backend
    let out = x.empty([n, c, g.outputHeight, g.outputWidth])
    backend.averagePoolForward(x, planes: n * c, geometry: g, into: out)
    let inShape = x.shape
    return record("avgPool2d", output: out, inputs: [x]) { grad in
      let dx = grad.empty(inShape)
      backend.averagePoolBackward(grad, planes: n * c, geometry: g, into: dx)
      return [dx]
    }
  }
}
