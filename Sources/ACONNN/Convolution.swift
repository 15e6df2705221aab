import ACONTensor

/// A 2-D convolution over NCHW images with a square kernel, as PyTorch's `nn.Conv2d`.
///
/// Parameters, in PyTorch's order: `weight` `[out, in / groups, k, k]` (decays) and `bias`
/// `[out]` (no decay). Both start from PyTorch's default, Kaiming-uniform with `a = sqrt(5)`,
/// which for these layers is `U(-1/sqrt(fanIn), 1/sqrt(fanIn))`, `fanIn = in / groups * k * k`,
/// drawn from the generator in that order: weight first, then bias. Model code that wants
/// another initialisation (the reference ShuffleNetV2 draws normals) overwrites the values.
public final class Conv2d: Module {
  public let inputChannels: Int
  public let outputChannels: Int
  public let kernelSize: Int
  public let stride: Int
  public let padding: Int
  public let dilation: Int
  public let groups: Int
  /// `[out, in / groups, k, k]`.
  public let weight: Parameter
  /// `[out]`, or nil for a layer built with `bias: false` (the usual choice before a batch norm).
  public let bias: Parameter?

  public override var settingsDescription: String {
    var parts = ["\(inputChannels), \(outputChannels)", "kernel_size=\(kernelSize)"]
    if stride != 1 { parts.append("stride=\(stride)") }
    if padding != 0 { parts.append("padding=\(padding)") }
    if dilation != 1 { parts.append("dilation=\(dilation)") }
    if groups != 1 { parts.append("groups=\(groups)") }
    if bias == nil { parts.append("bias=False") }
    return parts.joined(separator: ", ")
  }

  /// A layer initialised from `rng`, which advances, so that one generator can build a whole
  /// network reproducibly. `inputChannels` and `outputChannels` must be divisible by `groups`.
  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
    dilation: Int = 1, groups: Int = 1, bias: Bool = true, using rng: inout RandomGenerator
  ) {
    precondition(
      inputChannels > 0 && outputChannels > 0 && kernelSize > 0 && groups > 0
        && inputChannels % groups == 0 && outputChannels % groups == 0,
      "Conv2d(\(inputChannels), \(outputChannels), kernelSize: \(kernelSize), groups: \(groups)): "
        + "sizes must be positive and the channel counts divisible by groups")
    self.inputChannels = inputChannels
    self.outputChannels = outputChannels
    self.kernelSize = kernelSize
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
    self.groups = groups
    let fanIn = inputChannels / groups * kernelSize * kernelSize
    let bound = 1 / Float(fanIn).squareRoot()
    weight = Parameter(
      Tensor.randomUniform(
        [outputChannels, inputChannels / groups, kernelSize, kernelSize], low: -bound,
        high: bound, using: &rng),
      decays: true)
    self.bias =
      bias
      ? Parameter(Tensor.randomUniform([outputChannels], low: -bound, high: bound, using: &rng))
      : nil
    super.init()
    register(parameter: weight, as: "weight")
    if let b = self.bias { register(parameter: b, as: "bias") }
  }

  /// A layer initialised from a fresh generator seeded with `seed`.
  public convenience init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
    dilation: Int = 1, groups: Int = 1, bias: Bool = true, seed: UInt64
  ) {
    var rng = RandomGenerator(seed: seed)
    self.init(
      inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize,
      stride: stride, padding: padding, dilation: dilation, groups: groups, bias: bias,
      using: &rng)
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try Tensor.conv2d(
      x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
      dilation: dilation, groups: groups)
  }

  /// `self(x)` for the batch norm `batchNorm` to take next (and nothing else): with
  /// ``LayerFusion`` on and the batch norm in training mode, the bias's gradient is exactly zero
  /// (the batch norm takes every per-channel constant out again) and is given as zeros rather
  /// than summed from the output gradient
  /// (`Tensor.conv2d(_:weight:bias:stride:padding:dilation:groups:biasGradientIsZero:)`).
  public func forward(_ x: Tensor, before batchNorm: BatchNorm2d) throws -> Tensor {
    try Tensor.conv2d(
      x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
      dilation: dilation, groups: groups, biasGradientIsZero: biasGradientIsZero(before: batchNorm))
  }

  /// Whether this layer's output going to `batchNorm` (and only there) makes its bias gradient
  /// exactly zero: layer fusion on and the batch norm training over this layer's channels.
  private func biasGradientIsZero(before batchNorm: BatchNorm2d?) -> Bool {
    guard let batchNorm else { return false }
    return LayerFusion.isEnabled && batchNorm.isTraining && batchNorm.channels == outputChannels
  }

  /// `self(batchNorm(x))` as one op with the batch norm folded into this 1x1 layer
  /// (`Tensor.batchNormThenConv2d`), where ``LayerFusion`` is on, the batch norm is in
  /// training mode and this layer is a 1x1 convolution without padding or groups over the batch
  /// norm's channels; `next` is the batch norm this layer feeds, if any (its bias then gets the
  /// exact zero gradient, as in ``forward(_:before:)``). Nil otherwise: run the two layers.
  public func forward(
    _ x: Tensor, after batchNorm: BatchNorm2d, before next: BatchNorm2d?
  ) throws -> Tensor? {
    guard LayerFusion.isEnabled, batchNorm.isTraining, kernelSize == 1, padding == 0,
      dilation == 1, groups == 1, batchNorm.channels == inputChannels
    else { return nil }
    let y = try Tensor.batchNormThenConv2d(
      x, batchNormWeight: batchNorm.weight.value, batchNormBias: batchNorm.bias.value,
      runningMean: batchNorm.runningMean.value, runningVariance: batchNorm.runningVariance.value,
      training: true, momentum: batchNorm.momentum, epsilon: batchNorm.epsilon,
      weight: weight.value, bias: bias?.value, stride: stride,
      biasGradientIsZero: biasGradientIsZero(before: next))
    batchNorm.batchesTracked.increment()
    return y
  }

  /// `batchNorm(self(x))` as one convolution with the batch norm folded into its weights
  /// (`Tensor.conv2dThenBatchNormEvaluation`) where that is exact up to rounding and nothing
  /// needs a gradient: layer fusion on, the batch norm in evaluation mode, no gradient
  /// recorded. Nil otherwise: run the two layers.
  public func forward(_ x: Tensor, foldingEvaluation batchNorm: BatchNorm2d) throws -> Tensor? {
    guard LayerFusion.isEnabled, !batchNorm.isTraining, !GradientMode.isEnabled,
      batchNorm.channels == outputChannels
    else { return nil }
    return try Tensor.conv2dThenBatchNormEvaluation(
      x, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
      dilation: dilation, groups: groups, batchNormWeight: batchNorm.weight.value,
      batchNormBias: batchNorm.bias.value, runningMean: batchNorm.runningMean.value,
      runningVariance: batchNorm.runningVariance.value, epsilon: batchNorm.epsilon)
  }
}
