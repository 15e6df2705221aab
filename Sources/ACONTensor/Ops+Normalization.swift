import ACONKernels

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
    let (out, mean, invStd, n, c, plane, replicas) = try normalizedForward(
      op, x, residual: nil, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon,
      relu: fusedReLU)

    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    let savedX = x.detached
    let savedWeight = weight?.detached
    let savedBias = bias?.detached
    let (needX, needW, needB) = (x.node != nil, weight?.node != nil, bias?.node != nil)
    let hasWeight = weight != nil
    let hasBias = bias != nil
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: inputs) { g in
      let dx = needX ? Tensor(uninitializedShape: savedX.shape) : nil
      let dw = needW ? Tensor(uninitializedShape: [c]) : nil
      let db = needB ? Tensor(uninitializedShape: [c]) : nil
      if training, let replicas {
        backwardAcrossReplicas(
          replicas, savedX, g, dx: dx, mean: mean, invStd: invStd, weight: savedWeight,
          bias: savedBias, relu: fusedReLU, dweight: dw, dbias: db)
        var grads: [Tensor?] = [dx]
        if hasWeight { grads.append(dw) }
        if hasBias { grads.append(db) }
        return grads
      }
      let kernel = training ? BatchNormKernel.backwardTraining : BatchNormKernel.backwardEval
      kernel(
        savedX.data, g.data, dx?.mutableData, n, c, plane, mean.data, invStd.data,
        savedWeight?.data, savedBias?.data, fusedReLU, dw?.mutableData, db?.mutableData)
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
    let (out, mean, invStd, n, c, plane, replicas) = try normalizedForward(
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
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: inputs) { g in
      // dz, the gated gradient, is also the residual's gradient.
      let dz = Tensor(uninitializedShape: savedX.shape)
      let dx = needX ? Tensor(uninitializedShape: savedX.shape) : nil
      let dw = needW ? Tensor(uninitializedShape: [c]) : nil
      let db = needB ? Tensor(uninitializedShape: [c]) : nil
      if training, let replicas {
        ElementwiseKernel.reluBackward(savedY.data, g.data, dz.mutableData, count: g.count)
        backwardAcrossReplicas(
          replicas, savedX, dz, dx: dx, mean: mean, invStd: invStd, weight: savedWeight,
          bias: savedBias, relu: false, dweight: dw, dbias: db)
      } else if training {
        BatchNormKernel.backwardTrainingAfterResidualReLU(
          savedX.data, output: savedY.data, g.data, dz: dz.mutableData, dx: dx?.mutableData,
          batch: n, channels: c, plane: plane, mean: mean.data, invStd: invStd.data,
          weight: savedWeight?.data, bias: savedBias?.data, dweight: dw?.mutableData,
          dbias: db?.mutableData)
      } else {
        ElementwiseKernel.reluBackward(savedY.data, g.data, dz.mutableData, count: g.count)
        BatchNormKernel.backwardEval(
          savedX.data, dz.data, dx: dx?.mutableData, batch: n, channels: c, plane: plane,
          mean: mean.data, invStd: invStd.data, weight: savedWeight?.data, bias: savedBias?.data,
          relu: false, dweight: dw?.mutableData, dbias: db?.mutableData)
      }
      var grads: [Tensor?] = [dx, dz]
      if hasWeight { grads.append(dw) }
      if hasBias { grads.append(db) }
      return grads
    }
  }

  /// The forward half shared by the batch norm ops: statistics (see
  /// ``batchNormStatistics(_:_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:planeMeans:)``)
  /// and one normalising pass, adding `residual` and applying the ReLU when asked.
  static func normalizedForward(
    _ op: String, _ x: Tensor, residual: Tensor?, weight: Tensor?, bias: Tensor?,
    runningMean: Tensor?, runningVariance: Tensor?, training: Bool, momentum: Float,
    epsilon: Float, relu: Bool
  ) throws -> (
    out: Tensor, mean: Tensor, invStd: Tensor, batch: Int, channels: Int, plane: Int,
    replicas: (any BatchNormReplicaReducer)?
  ) {
    let (n, c) = (x.shape.first ?? 0, x.rank > 1 ? x.shape[1] : 0)
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    let (mean, invStd) = try batchNormStatistics(
      op, x, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon)
    let replicas = training ? BatchNormReplicas.reducer : nil
    let out = Tensor(uninitializedShape: x.shape)
    BatchNormKernel.normalize(
      x.data, out.mutableData, batch: n, channels: c, plane: plane, mean: mean.data,
      invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
      residual: residual?.data)
    return (out, mean, invStd, n, c, plane, replicas)
  }

  /// The training backward of a batch norm whose statistics span the replicas (see
  /// ``BatchNormReplicaReducer``): this batch's per-channel sums (the weight and bias
  /// gradients, local as in PyTorch's `SyncBatchNorm`; data parallelism averages them with the
  /// other gradients), summed over the replicas, then the input gradient from the sums.
  static func backwardAcrossReplicas(
    _ replicas: any BatchNormReplicaReducer, _ x: Tensor, _ dy: Tensor, dx: Tensor?,
    mean: Tensor, invStd: Tensor, weight: Tensor?, bias: Tensor?, relu: Bool, dweight: Tensor?,
    dbias: Tensor?
  ) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    let sumDy = Tensor(uninitializedShape: [c])
    let sumDyXhat = Tensor(uninitializedShape: [c])
    BatchNormKernel.backwardEval(
      x.data, dy.data, dx: nil, batch: n, channels: c, plane: plane, mean: mean.data,
      invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
      dweight: sumDyXhat.mutableData, dbias: sumDy.mutableData)
    dweight?.mutableData.update(from: sumDyXhat.data, count: c)
    dbias?.mutableData.update(from: sumDy.data, count: c)
    guard let dx else { return }
    let total = replicas.sum(sumDy.scalars + sumDyXhat.scalars + [Float(n * plane)])
    BatchNormKernel.inputGradientFromSums(
      x.data, dy.data, dx: dx.mutableData, batch: n, channels: c, plane: plane, mean: mean.data,
      invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
      sumDy: Array(total[0..<c]), sumDyXhat: Array(total[c..<(2 * c)]), count: Int(total[2 * c]))
  }

  /// Checks a batch norm's arguments and returns the mean and `1 / sqrt(variance + epsilon)`
  /// per channel it normalises with: the batch's in training (updating the running statistics
  /// in place, as ``batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)``
  /// documents), the running ones in evaluation. With `planeMeans` (`[N, C]` floats), training
  /// also writes each plane's mean of `x` from the same pass. Layers fused with a batch norm
  /// (batch norm + ACON) share this with the plain op, so both validate and update alike.
  public static func batchNormStatistics(
    _ op: String, _ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?,
    runningVariance: Tensor?, training: Bool, momentum: Float, epsilon: Float,
    planeMeans: UnsafeMutablePointer<Float>? = nil
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
          detail: "expected more than 1 value per channel when training, got input \(describe(x.shape))")
      }
    } else {
      guard runningMean != nil else {
        throw TensorError.invalidArgument(
          operation: op, detail: "evaluation mode needs running mean and running variance")
      }
    }

    let mean = Tensor(uninitializedShape: [c])
    let invStd = Tensor(uninitializedShape: [c])
    let mp = mean.mutableData
    let ip = invStd.mutableData
    if training {
      let variance = Tensor(uninitializedShape: [c])
      let vp = variance.mutableData
      BatchNormKernel.statistics(
        x.data, batch: n, channels: c, plane: plane, mean: mp, variance: vp, planeMeans: planeMeans)
      var m = m
      if let replicas = BatchNormReplicas.reducer {
        let whole = replicas.combine(count: m, mean: mean.scalars, variance: variance.scalars)
        m = whole.count
        mp.update(from: whole.mean, count: c)
        vp.update(from: whole.variance, count: c)
      }
      for ch in 0..<c { ip[ch] = 1 / (vp[ch] + epsilon).squareRoot() }
      if let runningMean, let runningVariance {
        let rm = runningMean.mutableData
        let rv = runningVariance.mutableData
        let unbias = Float(m) / Float(m - 1)
        for ch in 0..<c {
          rm[ch] = (1 - momentum) * rm[ch] + momentum * mp[ch]
          rv[ch] = (1 - momentum) * rv[ch] + momentum * vp[ch] * unbias
        }
      }
    } else {
      let rm = runningMean!.data
      let rv = runningVariance!.data
      for ch in 0..<c {
        guard rv[ch] + epsilon > 0 else {
          throw TensorError.invalidArgument(
            operation: op, detail: "running variance \(rv[ch]) of channel \(ch) plus epsilon is not positive")
        }
        mp[ch] = rm[ch]
        ip[ch] = 1 / (rv[ch] + epsilon).squareRoot()
      }
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
    let words = DropoutKernel.maskWords(count)
    let mask = MaskStorage(words: words)
    if probability < 1 {
      // One draw from `rng` seeds the whole mask, which the kernel builds in parallel.
      DropoutKernel.makeMask(mask.bits, count: count, probability: probability, seed: rng.next())
    } else {
      mask.bits.update(repeating: 0, count: words)
    }
    let scale: Float = probability < 1 ? 1 / (1 - probability) : 0
    let n = count
    let out = Tensor(uninitializedShape: shape)
    DropoutKernel.apply(data, mask: mask.bits, scale: scale, out.mutableData, count: n)
    return Tensor.record("dropout", output: out, inputs: [self]) { g in
      let dx = Tensor(uninitializedShape: g.shape)
      DropoutKernel.apply(g.data, mask: mask.bits, scale: scale, dx.mutableData, count: n)
      return [dx]
    }
  }
}

/// The bit mask a dropout pullback keeps, freed with the pullback.
final class MaskStorage {
  let bits: UnsafeMutablePointer<UInt64>
  let words: Int

  init(words: Int) {
    self.words = words
    bits = .allocate(capacity: max(words, 1))
  }

  deinit { bits.deallocate() }
}
