import ACONKernels

/// 2-D convolution, as PyTorch's `F.conv2d`.
extension Tensor {
  /// Convolves NCHW images with a filter bank, as PyTorch's `F.conv2d` (cross-correlation).
  ///
  /// The output is `[N, Cout, OH, OW]` with `OH = (H + 2 * padding - dilation * (kh - 1) - 1) /
  /// stride + 1` (and likewise `OW`). Depthwise layers (`groups == Cin == Cout`) run a direct
  /// kernel; every other layer runs as matrix products (on ``Device/cpu``).
  ///
  /// - Parameters:
  ///   - x: `[N, Cin, H, W]`.
  ///   - weight: `[Cout, Cin / groups, kh, kw]`.
  ///   - bias: `[Cout]`, or nil.
  ///   - stride: step between outputs, the same along both axes (at least 1).
  ///   - padding: zeros added on every side (at least 0).
  ///   - dilation: spacing between filter taps (at least 1).
  ///   - groups: input and output channels are split into this many independent groups.
  ///   - biasGradientIsZero: give the bias a gradient of zeros (see below) instead of summing
  ///     the output gradient.
  /// - Throws: `TensorError.shapeMismatch` naming "conv2d" when the shapes do not fit,
  ///   `TensorError.invalidArgument` for a stride, dilation or group count below 1 or a
  ///   negative padding.
  ///
  /// The pullback keeps only `x` and `weight`, and computes only the gradients of the inputs
  /// that record them.
  ///
  /// With `biasGradientIsZero`, the pullback gives the bias a gradient of zeros without reading
  /// the output gradient: the bias's exact gradient where the output goes only to a
  /// batch norm in training mode, which takes every per-channel constant out again (ResNet's and
  /// ShuffleNetV2's convolutions, which carry a bias as the reference's do); computed, it is
  /// rounding noise, at the cost of a pass over the output gradient.
  public static func conv2d(
    _ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
    dilation: Int = 1, groups: Int = 1, biasGradientIsZero: Bool = false
  ) throws -> Tensor {
    try conv2d(
      x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation,
      groups: groups, countedAs: weight, biasGradientIsZero: biasGradientIsZero)
  }

  /// ``conv2d(_:weight:bias:stride:padding:dilation:groups:biasGradientIsZero:)``, counted by
  /// ``OperationCounter`` as a layer of weight `countedWeight` (the parameter a folded weight
  /// was made from).
  static func conv2d(
    _ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, dilation: Int,
    groups: Int, countedAs countedWeight: Tensor, biasGradientIsZero: Bool = false
  ) throws -> Tensor {
    let g = try convGeometry(
      x: x.shape, weight: weight.shape, bias: bias?.shape, stride: stride, padding: padding,
      dilation: dilation, groups: groups)
    let backend = backend("conv2d", x, weight, bias)
    let out = x.empty([g.batch, g.outChannels, g.outHeight, g.outWidth])
    OperationCounter.add(
      "conv", weight: countedWeight, outputShape: out.shape,
      macs: out.count * g.inChannelsPerGroup * g.kernelHeight * g.kernelWidth)
    backend.convolutionForward(g, input: x, weight: weight, bias: bias, into: out)
    let needX = x.node != nil
    let needW = weight.node != nil
    let needB = bias?.node != nil
    // Only what a requested gradient reads is kept: x for dW, the weight for dx.
    let savedX = needW ? x.detached : nil
    let savedW = needX ? weight.detached : nil
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    let hasBias = bias != nil
    // The gradients, the input's added to `soFar` (x's gradient from other ops) when given.
    func gradients(_ dy: Tensor, _ soFar: Tensor?) -> [Tensor?] {
      let dx = needX ? soFar ?? dy.empty([g.batch, g.inChannels, g.height, g.width]) : nil
      let dw =
        needW
        ? dy.empty([g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth])
        : nil
      let db = needB ? dy.empty([g.outChannels]) : nil
      if let db, biasGradientIsZero { backend.fill(db, with: 0) }
      backend.convolutionBackward(
        g, input: savedX, weight: savedW, outputGradient: dy, inputGradient: dx,
        accumulatingInputGradient: soFar != nil, weightGradient: dw,
        biasGradient: biasGradientIsZero ? nil : db)
      var grads: [Tensor?] = [dx, dw]
      if hasBias { grads.append(db) }
      return grads
    }
    if needX && backend.convolutionAccumulatesInputGradient(g) {
      return record("conv2d", output: out, inputs: inputs, accumulatingFirst: gradients)
    }
    return record("conv2d", output: out, inputs: inputs) { gradients($0, nil) }
  }

  /// An evaluation-mode batch norm after a convolution, folded into it: `conv2d(x, weight *
  /// scale, bias * scale + shift)` with the batch norm as `scale[o] * y + shift[o]` (`scale =
  /// batchNormWeight / sqrt(runningVariance + epsilon)`, `shift = batchNormBias - runningMean *
  /// scale`). One convolution with a bias instead of a convolution and a pass over its output:
  /// the inference fusion of deployment runtimes. The result differs from the two ops by the
  /// rounding of the scaled weights (a few units in the last place).
  ///
  /// Inference only: it throws while gradients are recorded, as the folded weights would pass
  /// no gradient to the batch norm's parameters.
  public static func conv2dThenBatchNormEvaluation(
    _ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
    dilation: Int = 1, groups: Int = 1, batchNormWeight: Tensor, batchNormBias: Tensor,
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float
  ) throws -> Tensor {
    let op = "conv2d_batchNorm(eval)"
    guard !GradientMode.isEnabled else {
      throw TensorError.invalidArgument(
        operation: op,
        detail: "inference only (run it inside withoutGradients): the folded weights pass no "
          + "gradient to the batch norm")
    }
    _ = try convGeometry(
      x: x.shape, weight: weight.shape, bias: bias?.shape, stride: stride, padding: padding,
      dilation: dilation, groups: groups)
    let channels = weight.shape[0]
    for (name, t) in [
      ("weight", batchNormWeight), ("bias", batchNormBias), ("running mean", runningMean),
      ("running variance", runningVariance),
    ] where t.shape != [channels] {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [weight.shape, t.shape],
        detail: "the batch norm's \(name) must have one value per output channel ([\(channels)])")
    }
    guard epsilon >= 0 else {
      throw TensorError.invalidArgument(operation: op, detail: "epsilon \(epsilon) must be >= 0")
    }
    let backend = backend(
      op, x, weight, bias, batchNormWeight, batchNormBias, runningMean, runningVariance)
    let foldedWeight = weight.empty(weight.shape)
    let foldedBias = weight.empty([channels])
    if let bad = backend.batchNormFoldedIntoConvolution(
      weight: weight, bias: bias, batchNormWeight: batchNormWeight, batchNormBias: batchNormBias,
      runningMean: runningMean, runningVariance: runningVariance, epsilon: epsilon,
      foldedWeight: foldedWeight, foldedBias: foldedBias)
    {
      throw TensorError.invalidArgument(
        operation: op,
        detail: "running variance \(runningVariance.scalars[bad]) of channel \(bad) plus epsilon "
          + "is not positive")
    }
    return try conv2d(
      x, weight: foldedWeight, bias: foldedBias, stride: stride, padding: padding,
      dilation: dilation, groups: groups, countedAs: weight)
  }

  /// Checks the arguments of ``conv2d(_:weight:bias:stride:padding:dilation:groups:)`` and
  /// returns the kernel geometry.
  static func convGeometry(
    x: [Int], weight: [Int], bias: [Int]?, stride: Int, padding: Int, dilation: Int, groups: Int
  ) throws -> ConvGeometry {
    let op = "conv2d"
    guard stride >= 1 else {
      throw TensorError.invalidArgument(
        operation: op, detail: "stride must be at least 1, got \(stride)")
    }
    guard dilation >= 1 else {
      throw TensorError.invalidArgument(
        operation: op, detail: "dilation must be at least 1, got \(dilation)")
    }
    guard padding >= 0 else {
      throw TensorError.invalidArgument(
        operation: op, detail: "padding must not be negative, got \(padding)")
    }
    guard groups >= 1 else {
      throw TensorError.invalidArgument(
        operation: op, detail: "groups must be at least 1, got \(groups)")
    }
    guard x.count == 4, weight.count == 4 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x, weight],
        detail: "expects input [N, Cin, H, W] and weight [Cout, Cin / groups, kh, kw]")
    }
    guard x.allSatisfy({ $0 >= 1 }), weight.allSatisfy({ $0 >= 1 }) else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x, weight], detail: "every dimension must be at least 1")
    }
    let (cin, cout) = (x[1], weight[0])
    guard cin % groups == 0, cout % groups == 0 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x, weight],
        detail:
          "input channels \(cin) and output channels \(cout) must be divisible by groups \(groups)")
    }
    guard weight[1] * groups == cin else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x, weight],
        detail:
          "weight expects \(weight[1] * groups) input channels (\(weight[1]) per group x \(groups) groups), input has \(cin)"
      )
    }
    let (kh, kw) = (weight[2], weight[3])
    let reachH = dilation * (kh - 1) + 1
    let reachW = dilation * (kw - 1) + 1
    guard x[2] + 2 * padding >= reachH, x[3] + 2 * padding >= reachW else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x, weight],
        detail:
          "kernel reach \(reachH)x\(reachW) (dilation \(dilation)) exceeds the padded input \(x[2] + 2 * padding)x\(x[3] + 2 * padding)"
      )
    }
    if let bias, bias != [cout] {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [weight, bias], detail: "bias must be [\(cout)]")
    }
    return ConvGeometry(
      batch: x[0], inChannels: cin, height: x[2], width: x[3], outChannels: cout,
      kernelHeight: kh, kernelWidth: kw, stride: stride, padding: padding, dilation: dilation,
      groups: groups)
  }
}
