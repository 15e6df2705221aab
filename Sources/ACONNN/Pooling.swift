import ACONTensor

/// A pooling layer with a square window, as PyTorch's pooling modules (`ceil_mode = false`):
/// the geometry that ``MaxPool2d`` and ``AvgPool2d`` share.
public class Pool2d: Module {
  public let kernelSize: Int
  public let stride: Int
  public let padding: Int

  public override var settingsDescription: String {
    "kernel_size=\(kernelSize), stride=\(stride)" + (padding != 0 ? ", padding=\(padding)" : "")
  }

  /// `stride` defaults to the kernel size, as in PyTorch.
  public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
    self.kernelSize = kernelSize
    self.stride = stride ?? kernelSize
    self.padding = padding
    super.init()
  }
}

/// Max pooling with a square window, as PyTorch's `nn.MaxPool2d` (`ceil_mode = false`).
public final class MaxPool2d: Pool2d {
  public override func forward(_ x: Tensor) throws -> Tensor {
    try Tensor.maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding)
  }
}

/// Average pooling with a square window, as PyTorch's `nn.AvgPool2d` (`ceil_mode = false`,
/// `count_include_pad = true`).
public final class AvgPool2d: Pool2d {
  public override func forward(_ x: Tensor) throws -> Tensor {
    try Tensor.avgPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding)
  }
}

/// The mean of each channel over all positions: `[N, C, H, W]` to `[N, C, 1, 1]` for any
/// `H, W`, as PyTorch's `nn.AdaptiveAvgPool2d(1)`.
public final class GlobalAveragePool2d: Module {
  public override init() { super.init() }

  public override func forward(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else {
      throw TensorError.shapeMismatch(
        operation: "GlobalAveragePool2d", shapes: [x.shape], detail: "expects [N, C, H, W] input")
    }
    return try x.spatialMean()
  }
}
