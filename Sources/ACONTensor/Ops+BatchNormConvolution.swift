/// A batch norm folded into the 1x1 convolution after it, in training as in evaluation.
extension Tensor {
  /// `conv2d(batchNorm(x), weight, bias)` for a 1x1 convolution (no padding, one group) as one
  /// op: the batch norm's affine map `x * scale[i] + shift[i]` is folded into the
  /// convolution's weights and bias, `conv2d(x, weight * scale[i], bias + weight shift)`, so the
  /// normalised input is neither written nor kept. The values, gradients and running-statistics
  /// updates are those of
  /// ``batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)``
  /// then ``conv2d(_:weight:bias:stride:padding:dilation:groups:biasGradientIsZero:)``, to
  /// rounding: the convolution's weight gradient is taken against `x` and scaled back
  /// (`dW[o, i] = scale[i] sum(dy[o] x[i]) + shift[i] sum(dy[o])`), its input gradient against
  /// the unscaled weights is the batch norm's upstream gradient.
  ///
  /// ShuffleNetV2's branches have this pair after each depthwise convolution (a batch norm
  /// without an activation, then a 1x1 layer); folding saves a pass that reads and writes the
  /// depthwise layer's output and the memory that kept the normalised copy for backward.
  ///
  /// Where a channel's mean is large against its spread (`|mean| / std` above 64), products of
  /// the raw input with scaled weights would cancel to a visible loss of precision; the op then
  /// runs the two ops one after the other instead.
  ///
  /// - Parameters:
  ///   - x: `[N, C, H, W]`.
  ///   - batchNormWeight: the batch norm's scale, `[C]`.
  ///   - batchNormBias: the batch norm's shift, `[C]`.
  ///   - runningMean: updated in training, read in evaluation, `[C]`.
  ///   - runningVariance: updated in training, read in evaluation, `[C]`.
  ///   - training: batch statistics (and running-statistics updates) rather than the running
  ///     ones.
  ///   - momentum: the running statistics' momentum.
  ///   - epsilon: added to the variance.
  ///   - weight: the convolution's weight, `[Cout, C, 1, 1]`.
  ///   - bias: the convolution's bias, `[Cout]`, or nil.
  ///   - stride: the convolution's stride.
  ///   - biasGradientIsZero: as for `conv2d`: the convolution feeds a training-mode batch norm,
  ///     so its bias gradient is exactly zero (given as zeros, and the weight gradient's `shift`
  ///     term, whose factor it is, left out).
  /// - Throws: `TensorError` as either op throws, and for a convolution that is not 1x1.
  public static func batchNormThenConv2d(
    _ x: Tensor, batchNormWeight: Tensor, batchNormBias: Tensor, runningMean: Tensor?,
    runningVariance: Tensor?, training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5,
    weight: Tensor, bias: Tensor?, stride: Int = 1, biasGradientIsZero: Bool = false
  ) throws -> Tensor {
    let op = "batchNorm_conv1x1"
    let g = try convGeometry(
      x: x.shape, weight: weight.shape, bias: bias?.shape, stride: stride, padding: 0,
      dilation: 1, groups: 1)
    guard g.kernelHeight == 1, g.kernelWidth == 1 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, weight.shape],
        detail: "folds a batch norm into a 1x1 convolution only")
    }
    // The batch norm's share of the op, timed apart from the convolution's kernels (which the
    // backend times) for `acon bench --budget`: its statistics read x once forward; backward
    // reads x and the convolution's input gradient and writes x's.
    let normBytes = Double(4 * x.count)
    let (mean, invStd) = try Profiler.time("kernel fwd", batchNormKernelRow, bytes: normBytes) {
      try batchNormStatistics(
        op, x, weight: batchNormWeight, bias: batchNormBias, runningMean: runningMean,
        runningVariance: runningVariance, training: training, momentum: momentum,
        epsilon: epsilon)
    }
    let backend = backend(op, x, batchNormWeight, batchNormBias, weight, bias)
    let (cin, cout) = (g.inChannels, g.outChannels)

    // Far from zero against its spread, x * scale and shift cancel: normalise first.
    let (means, inverses) = (mean.scalars, invStd.scalars)
    guard (0..<cin).allSatisfy({ abs(means[$0]) * inverses[$0] <= 64 }) else {
      let normalised = batchNorm(
        x, mean: mean, invStd: invStd, weight: batchNormWeight, bias: batchNormBias,
        training: training, fusedReLU: false)
      return try conv2d(
        normalised, weight: weight, bias: bias, stride: stride,
        biasGradientIsZero: biasGradientIsZero)
    }

    let scale = x.empty([1, cin, 1, 1])
    let shift = x.empty([cin])
    backend.batchNormAffine(
      mean: mean, invStd: invStd, weight: batchNormWeight, bias: batchNormBias, scale: scale,
      shift: shift)
    let foldedWeight = weight.empty(weight.shape)
    backend.binary(.multiply, weight, scale, into: foldedWeight)
    let foldedBias = weight.empty([cout])
    if let bias { backend.copy(bias, into: foldedBias) }
    backend.matrixMultiply(
      weight, transposed: false, shift, transposed: false, m: cout, n: 1, k: cin,
      beta: bias == nil ? 0 : 1, into: foldedBias)
    let out = x.empty([g.batch, cout, g.outHeight, g.outWidth])
    OperationCounter.add(
      "conv", weight: weight, outputShape: out.shape, macs: out.count * cin)
    backend.convolutionForward(g, input: x, weight: foldedWeight, bias: foldedBias, into: out)

    var inputs = [x, batchNormWeight, batchNormBias, weight]
    if let bias { inputs.append(bias) }
    let (savedX, savedW) = (x.detached, weight.detached)
    let (gamma, beta) = (batchNormWeight.detached, batchNormBias.detached)
    let (needX, needGamma, needBeta) = (
      x.node != nil, batchNormWeight.node != nil, batchNormBias.node != nil
    )
    let (needW, needB) = (weight.node != nil, bias?.node != nil)
    let hasBias = bias != nil
    let replicas = training ? BatchNormReplicas.reducer : nil
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: inputs) { dy in
      // The convolution's gradients against x and the unscaled weight: its input gradient is
      // the batch norm's upstream gradient; its weight gradient is scaled back below.
      let normalisedGradient = dy.empty(savedX.shape)
      let dw = needW ? dy.empty(savedW.shape) : nil
      // sum(dy[o]): the bias's gradient and the factor of the weight gradient's shift term.
      let outputSums = needB || (needW && !biasGradientIsZero) ? dy.empty([cout]) : nil
      backend.convolutionBackward(
        g, input: savedX, weight: savedW, outputGradient: dy, inputGradient: normalisedGradient,
        accumulatingInputGradient: false, weightGradient: dw,
        biasGradient: biasGradientIsZero ? nil : outputSums)
      if let outputSums, biasGradientIsZero { backend.fill(outputSums, with: 0) }
      var scaledWeightGradient: Tensor?
      if let dw {
        let scaled = dy.empty(savedW.shape)
        backend.binary(.multiply, dw, scale, into: scaled)
        if let outputSums, !biasGradientIsZero {
          backend.matrixMultiply(
            outputSums, transposed: false, shift, transposed: false, m: cout, n: cin, k: 1,
            beta: 1, into: scaled)
        }
        scaledWeightGradient = scaled
      }
      let dx = needX ? dy.empty(savedX.shape) : nil
      let (dGamma, dBeta) = (
        needGamma ? dy.empty([cin]) : nil, needBeta ? dy.empty([cin]) : nil
      )
      Profiler.time("kernel bwd", batchNormKernelRow, bytes: 3 * normBytes) {
        backend.batchNormBackward(
          savedX, gradient: normalisedGradient, training: training, mean: mean, invStd: invStd,
          weight: gamma, bias: beta, relu: false, replicas: replicas, inputGradient: dx,
          weightGradient: dGamma, biasGradient: dBeta)
      }
      var grads: [Tensor?] = [dx, dGamma, dBeta, scaledWeightGradient]
      if hasBias { grads.append(outputSums) }
      return grads
    }
  }

  /// The profiler's row for the batch norm inside
  /// ``batchNormThenConv2d(_:batchNormWeight:batchNormBias:runningMean:runningVariance:training:momentum:epsilon:weight:bias:stride:biasGradientIsZero:)``.
  public static let batchNormKernelRow = "batchNorm before conv 1x1"
}
