/// Differentiable batch normalisation and dropout.
extension Tensor {
  /// Batch normalisation over the channel dimension of `[N, C, H, W]` or `[N, C]` input, as
  /// PyTorch's `F.batch_norm`.
  ///
  /// In training mode the batch mean and biased variance per channel normalise the input, and
  /// the running statistics, when given, are updated in place in PyTorch's convention:
  /// `running = (1 - momentum) * running + momentum * batch`, where the running variance takes
  /// the unbiased batch variance (times `M / (M - 1)`, `M = N * H * W`). In evaluation mode the
  /// running statistics normalise the input and are left untouched.
  ///
  /// The pullback keeps only the input and two floats per channel (mean and `1 / std`), and
  /// differentiates through the batch statistics in training mode.
  ///
  /// With `fusedReLU`, the result is `relu(batchNorm(x))` computed in the same pass: the
  /// composition's value and gradients, with two fewer passes over memory forward, three fewer
  /// backward, and no saved ReLU output (the pullback recomputes the ReLU's gate from `x`).
  ///
  /// - Throws: `TensorError` for a rank other than 2 or 4, a parameter or statistic whose shape
  ///   is not `[C]`, evaluation without running statistics, or training on one value per
  ///   channel (the variance would be undefined).
  public static func batchNorm(
    _ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVariance: Tensor?,
    training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5, fusedReLU: Bool = false
  ) throws -> Tensor {
    let op = fusedReLU ? "batchNormReLU" : "batchNorm"
    let (mean, invStd) = try batchNormStatistics(
      op, x, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon)
    return batchNorm(
      x, mean: mean, invStd: invStd, weight: weight, bias: bias, training: training,
      fusedReLU: fusedReLU)
  }

  /// The batch norm op from its statistics (see
  /// ``batchNormStatistics(_:_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:centredPlaneMeans:)``,
  /// which has checked the arguments and updated the running statistics): the normalising pass
  /// and the pullback.
  static func batchNorm(
    _ x: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor?, bias: Tensor?, training: Bool,
    fusedReLU: Bool
  ) -> Tensor {
    let op = fusedReLU ? "batchNormReLU" : "batchNorm"
    let c = x.shape[1]
    let out = x.empty(x.shape)
    backend(op, x, weight, bias).batchNormNormalize(
      x, mean: mean, invStd: invStd, weight: weight, bias: bias, relu: fusedReLU, residual: nil,
      into: out)

    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    let savedX = x.detached
    let savedWeight = weight?.detached
    let savedBias = bias?.detached
    let (needX, needW, needB) = (x.node != nil, weight?.node != nil, bias?.node != nil)
    let hasWeight = weight != nil
    let hasBias = bias != nil
    let backend = x.device.backend
    let replicas = training ? BatchNormReplicas.reducer : nil
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: inputs) { g in
      let dx = needX ? g.empty(savedX.shape) : nil
      let dw = needW ? g.empty([c]) : nil
      let db = needB ? g.empty([c]) : nil
      backend.batchNormBackward(
        savedX, gradient: g, training: training, mean: mean, invStd: invStd,
        weight: savedWeight, bias: savedBias, relu: fusedReLU, replicas: replicas,
        inputGradient: dx, weightGradient: dw, biasGradient: db)
      var grads: [Tensor?] = [dx]
      if hasWeight { grads.append(dw) }
      if hasBias { grads.append(db) }
      return grads
    }
  }

  /// `relu(batchNorm(x) + residual)`, the end of a residual block, as one op: the value and
  /// gradients of ``batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)``,
  /// an add and a ReLU, with the add and the ReLU folded into the normalising pass forward and
  /// into the batch norm's first backward pass (four passes over memory fewer in all). The
  /// pullback keeps `x` and the output (the ReLU's gate), as the three ops would.
  ///
  /// - Throws: as the batch norm does, and `TensorError.shapeMismatch` when `residual` does not
  ///   have `x`'s shape.
  public static func batchNormAddReLU(
    _ x: Tensor, residual: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?,
    runningVariance: Tensor?, training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5
  ) throws -> Tensor {
    let op = "batchNormAddReLU"
    guard residual.shape == x.shape else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, residual.shape],
        detail: "the residual must have the batch norm input's shape")
    }
    let (out, mean, invStd, _, c, _) = try normalizedForward(
      op, x, residual: residual, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon,
      relu: true)

    var inputs = [x, residual]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    let (savedX, savedY) = (x.detached, out.detached)
    let (savedWeight, savedBias) = (weight?.detached, bias?.detached)
    let (needX, needW, needB) = (x.node != nil, weight?.node != nil, bias?.node != nil)
    let (hasWeight, hasBias) = (weight != nil, bias != nil)
    let backend = x.device.backend
    let replicas = training ? BatchNormReplicas.reducer : nil
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: inputs) { g in
      // dz, the gated gradient, is also the residual's gradient.
      let dz = g.empty(savedX.shape)
      let dx = needX ? g.empty(savedX.shape) : nil
      let dw = needW ? g.empty([c]) : nil
      let db = needB ? g.empty([c]) : nil
      if let replicas {
        backend.reluBackward(output: savedY, gradient: g, into: dz)
        backend.batchNormBackward(
          savedX, gradient: dz, training: true, mean: mean, invStd: invStd, weight: savedWeight,
          bias: savedBias, relu: false, replicas: replicas, inputGradient: dx,
          weightGradient: dw, biasGradient: db)
      } else if training {
        backend.batchNormAddReLUBackward(
          savedX, output: savedY, gradient: g, mean: mean, invStd: invStd, weight: savedWeight,
          bias: savedBias, gatedGradient: dz, inputGradient: dx, weightGradient: dw,
          biasGradient: db)
      } else {
        backend.reluBackward(output: savedY, gradient: g, into: dz)
        backend.batchNormBackward(
          savedX, gradient: dz, training: false, mean: mean, invStd: invStd,
          weight: savedWeight, bias: savedBias, relu: false, replicas: nil, inputGradient: dx,
          weightGradient: dw, biasGradient: db)
      }
      var grads: [Tensor?] = [dx, dz]
      if hasWeight { grads.append(dw) }
      if hasBias { grads.append(db) }
      return grads
    }
  }

  /// The forward half shared by the batch norm ops: statistics (see
  /// ``batchNormStatistics(_:_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:centredPlaneMeans:)``)
  /// and one normalising pass, adding `residual` and applying the ReLU when asked.
  static func normalizedForward(
    _ op: String, _ x: Tensor, residual: Tensor?, weight: Tensor?, bias: Tensor?,
    runningMean: Tensor?, runningVariance: Tensor?, training: Bool, momentum: Float,
    epsilon: Float, relu: Bool
  ) throws -> (out: Tensor, mean: Tensor, invStd: Tensor, batch: Int, channels: Int, plane: Int) {
    let (n, c) = (x.shape.first ?? 0, x.rank > 1 ? x.shape[1] : 0)
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    let (mean, invStd) = try batchNormStatistics(
      op, x, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon)
    let out = x.empty(x.shape)
    backend(op, x, residual, weight, bias).batchNormNormalize(
      x, mean: mean, invStd: invStd, weight: weight, bias: bias, relu: relu, residual: residual,
      into: out)
    return (out, mean, invStd, n, c, plane)
  }

  /// Checks a batch norm's arguments and returns the mean and `1 / sqrt(variance + epsilon)`
  /// per channel it normalises with: the batch's in training (updating the running statistics
  /// in place, as ``batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)``
  /// documents), the running ones in evaluation. With `centredPlaneMeans` (`[N, C]` floats),
  /// training also writes each plane's mean of `x - mean[channel]` from the same passes. Layers fused with a batch norm
  /// (batch norm + ACON) share this with the plain op, so both validate and update alike.
  static func batchNormStatistics(
    _ op: String, _ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?,
    runningVariance: Tensor?, training: Bool, momentum: Float, epsilon: Float,
    centredPlaneMeans: Tensor? = nil
  ) throws -> (mean: Tensor, invStd: Tensor) {
    guard x.rank == 2 || x.rank == 4 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape], detail: "expects [N, C, H, W] or [N, C] input")
    }
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    for (name, t) in [
      ("weight", weight), ("bias", bias), ("running mean", runningMean),
      ("running variance", runningVariance),
    ] {
      if let t, t.shape != [c] {
        throw TensorError.shapeMismatch(
          operation: op, shapes: [x.shape, t.shape],
          detail: "\(name) must have one value per channel ([\(c)])")
      }
    }
    guard (runningMean == nil) == (runningVariance == nil) else {
      throw TensorError.invalidArgument(
        operation: op, detail: "give both running mean and running variance, or neither")
    }
    guard epsilon >= 0, momentum >= 0, momentum <= 1 else {
      throw TensorError.invalidArgument(
        operation: op, detail: "epsilon \(epsilon) must be >= 0 and momentum \(momentum) in [0, 1]")
    }
    let m = n * plane
    if training {
      guard m > 1 else {
        throw TensorError.invalidArgument(
          operation: op,
          detail:
            "expected more than 1 value per channel when training, got input \(describe(x.shape))")
      }
    } else {
      guard runningMean != nil else {
        throw TensorError.invalidArgument(
          operation: op, detail: "evaluation mode needs running mean and running variance")
      }
    }

    let backend = backend(op, x, weight, bias, runningMean, runningVariance)
    let mean = x.empty([c])
    let invStd = x.empty([c])
    if training {
      backend.batchNormTrainingStatistics(
        x, epsilon: epsilon, momentum: momentum, runningMean: runningMean,
        runningVariance: runningVariance, replicas: BatchNormReplicas.reducer, mean: mean,
        invStd: invStd, centredPlaneMeans: centredPlaneMeans)
    } else if let bad = backend.batchNormEvaluationStatistics(
      runningMean: runningMean!, runningVariance: runningVariance!, epsilon: epsilon, mean: mean,
      invStd: invStd)
    {
      let variance = runningVariance!.scalars[bad]
      throw TensorError.invalidArgument(
        operation: op,
        detail: "running variance \(variance) of channel \(bad) plus epsilon is not positive")
    }

    return (mean, invStd)
  }

  /// Inverted dropout, as PyTorch's `F.dropout`: in training, each element is zeroed with
  /// probability `probability` and the rest are scaled by `1 / (1 - probability)`; otherwise
  /// (or with probability 0) the input is returned unchanged.
  ///
  /// The mask is seeded by one draw from `rng`, so a seeded generator reproduces it (whatever
  /// the number of cores); the pullback keeps only the mask, one bit per element.
  ///
  /// - Throws: `TensorError.invalidArgument` when `probability` is outside `[0, 1]`.
  public func dropout(
    probability: Float, training: Bool, using rng: inout RandomGenerator
  ) throws -> Tensor {
    guard probability >= 0, probability <= 1 else {
      throw TensorError.invalidArgument(
        operation: "dropout", detail: "probability \(probability) is outside [0, 1]")
    }
    if !training || probability == 0 || count == 0 { return self }
    // One draw from `rng` seeds the whole mask.
    let backend = device.backend
    let mask = backend.dropoutMask(count: count, probability: probability, seed: rng.next())
    let scale: Float = probability < 1 ? 1 / (1 - probability) : 0
    let out = empty(shape)
    backend.applyDropout(self, mask: mask, scale: scale, into: out)
    return Tensor.record("dropout", output: out, inputs: [self]) { g in
      let dx = g.empty(g.shape)
      backend.applyDropout(g, mask: mask, scale: scale, into: dx)
      return [dx]
    }
  }
}
