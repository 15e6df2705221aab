import ACONKernels

/// Batch norm followed by ACON-C (or meta-ACON channel-wise) as one differentiable op.
extension Tensor {
  /// Batch norm followed by ACON-C (or meta-ACON channel-wise) as one op:
  /// `acon(batchNorm(x))` with the values, gradients and running-statistics updates of
  /// ``batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)``
  /// then ``acon(_:p1:p2:beta:gate:)`` (or ``metaAcon(_:p1:p2:gate:generator:)``), in fewer
  /// passes over memory and keeping only `x` (see
  /// ``ComputeBackend/aconAfterBatchNormForward(_:scale:shift:p1:p2:beta:layout:gate:into:)``).
  ///
  /// - `x`: `[N, C, H, W]`; `weight`, `bias`, the running statistics: `[C]`.
  /// - `p1`, `p2`: one value per channel. Give `beta` (one per channel) for ACON-C, or
  ///   `generator` for meta-ACON: it maps the pooled means of the normalised input,
  ///   `[N, C, 1, 1]`, to beta `[N, C, 1, 1]` with recorded ops, as in `metaAcon`.
  ///
  /// - Throws: `TensorError` for shapes that do not fit, both or neither of `beta` and
  ///   `generator`, and whatever the generator throws (forward, or backward through its tape).
  public static func batchNormAcon(
    _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    training: Bool, momentum: Float, epsilon: Float, p1: Tensor, p2: Tensor, beta: Tensor?,
    gate: ACONGate = .sigmoid, generator: ((Tensor) throws -> Tensor)? = nil
  ) throws -> Tensor {
    try batchNormAcon(
      x, weight: weight, bias: bias, runningMean: runningMean, runningVariance: runningVariance,
      training: training, momentum: momentum, epsilon: epsilon, p1: p1, p2: p2, beta: beta,
      gate: gate, generator: generator, pool: nil)
  }

  /// `maxPool2d(batchNormAcon(x, ...), kernelSize:stride:padding:)`: the same values,
  /// gradients and running-statistics updates as the two ops in turn (see
  /// ``batchNormAcon(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:p1:p2:beta:gate:generator:)``
  /// and ``maxPool2d(_:kernelSize:stride:padding:)``), as one op where the backend has the
  /// fused path (``ComputeBackend/fusesMaxPoolAfterBatchNormACON(_:pool:)``) and gradients are
  /// recorded: the activation is then pooled as it is formed and never stored, and its gradient
  /// is formed plane by plane from the pooled one (ShuffleNetV2's stem).
  ///
  /// - Throws: `TensorError` as either op throws.
  public static func batchNormAconMaxPool(
    _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    training: Bool, momentum: Float, epsilon: Float, p1: Tensor, p2: Tensor, beta: Tensor?,
    gate: ACONGate = .sigmoid, generator: ((Tensor) throws -> Tensor)? = nil,
    poolKernelSize kernelSize: Int, poolStride stride: Int? = nil, poolPadding padding: Int = 0
  ) throws -> Tensor {
    let pool = try poolGeometry(
      "batchNorm_acon_maxPool", x, kernelSize: kernelSize, stride: stride, padding: padding)
    guard GradientMode.isEnabled, x.device.backend.fusesMaxPoolAfterBatchNormACON(x, pool: pool)
    else {
      let y = try batchNormAcon(
        x, weight: weight, bias: bias, runningMean: runningMean,
        runningVariance: runningVariance, training: training, momentum: momentum,
        epsilon: epsilon, p1: p1, p2: p2, beta: beta, gate: gate, generator: generator)
      return try maxPool2d(y, kernelSize: kernelSize, stride: stride, padding: padding)
    }
    return try batchNormAcon(
      x, weight: weight, bias: bias, runningMean: runningMean, runningVariance: runningVariance,
      training: training, momentum: momentum, epsilon: epsilon, p1: p1, p2: p2, beta: beta,
      gate: gate, generator: generator, pool: pool)
  }

  /// Both ops above: with `pool`, the output is the pooled activation.
  static func batchNormAcon(
    _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    training: Bool, momentum: Float, epsilon: Float, p1: Tensor, p2: Tensor, beta: Tensor?,
    gate: ACONGate, generator: ((Tensor) throws -> Tensor)?, pool: PoolGeometry?
  ) throws -> Tensor {
    let op = "batchNorm_acon"
    if training && BatchNormReplicas.reducer != nil {
      throw TensorError.invalidArgument(
        operation: op,
        detail: "no batch statistics across replicas in the fused op; run the layers unfused")
    }
    guard x.rank == 4 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape], detail: "expects [N, C, H, W] input")
    }
    guard (beta == nil) != (generator == nil) else {
      throw TensorError.invalidArgument(operation: op, detail: "give beta or a generator, not both")
    }
    let backend = backend(op, x, weight, bias, runningMean, runningVariance, p1, p2, beta)
    let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    // Each plane's mean of x - mean[c]: centred, so the pooled means below are formed without
    // cancellation when x is far from zero against its spread (raw pixels).
    let xMeans = generator != nil ? x.empty([n, c]) : nil
    let (mean, invStd) = try batchNormStatistics(
      op, x, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon,
      centredPlaneMeans: training ? xMeans : nil)
    if let xMeans, !training {
      backend.planeMeans(x, centres: mean, planes: n * c, plane: plane, into: xMeans)
    }
    // The batch norm as `scale[c] * x + shift[c]`.
    let scale = x.empty([c])
    let shift = x.empty([c])
    backend.batchNormAffine(
      mean: mean, invStd: invStd, weight: weight, bias: bias, scale: scale, shift: shift)

    // beta: the parameter, or the generator's output from the pooled normalised input, whose
    // plane means are the affine map of x's (its tape starts at the `pooled` leaf).
    var pooled: Parameter?
    let betaUsed: Tensor
    if let generator, let xMeans {
      let means = x.empty([n, c, 1, 1])
      backend.batchNormPooledMeans(centredPlaneMeans: xMeans, scale: scale, bias: bias, into: means)
      let leaf = Parameter(means)
      pooled = leaf
      betaUsed = try generator(GradientMode.isEnabled ? leaf.value : leaf.value.detached)
      guard betaUsed.shape == [n, c, 1, 1] else {
        throw TensorError.shapeMismatch(
          operation: op, shapes: [x.shape, betaUsed.shape],
          detail: "the generator must return beta as [N, C, 1, 1]")
      }
    } else {
      betaUsed = beta!
    }
    let (_, layout) = try aconPlan(op, x, p1, p2, betaUsed)
    let out: Tensor
    var indices: Tensor?
    if let pool {
      let positions = x.empty([n, c, pool.outputHeight, pool.outputWidth])
      out = x.empty(positions.shape)
      backend.aconAfterBatchNormMaxPoolForward(
        x, scale: scale, shift: shift, p1: p1, p2: p2, beta: betaUsed, layout: layout,
        gate: gate, pool: pool, into: out, indices: positions)
      indices = positions
    } else {
      out = x.empty(x.shape)
      backend.aconAfterBatchNormForward(
        x, scale: scale, shift: shift, p1: p1, p2: p2, beta: betaUsed, layout: layout,
        gate: gate, into: out)
    }

    let (sx, sw, s1, s2, sb) = (
      x.detached, weight.detached, p1.detached, p2.detached, betaUsed.detached
    )
    let needX = x.node != nil
    return record(
      op + (pool != nil ? "_maxPool" : "") + (training ? "(train)" : "(eval)"), output: out,
      inputs: [x, weight, bias, p1, p2, betaUsed]
    ) { g in
      // Pass 1: dz (into dx's buffer) and the ACON's and the batch norm's sums per plane.
      let dx = g.empty(sx.shape)
      let normSums = g.empty([2 * n * c])
      let (dp1, dp2, dbeta) = (g.empty(s1.shape), g.empty(s2.shape), g.empty(sb.shape))
      if let pool, let indices {
        backend.aconAfterBatchNormBackward(
          sx, pooledGradient: g, indices: indices, pool: pool, scale: scale, shift: shift,
          mean: mean, p1: s1, p2: s2, beta: sb, layout: layout, gate: gate, dz: dx,
          normSums: normSums, p1Gradient: dp1, p2Gradient: dp2, betaGradient: dbeta)
      } else {
        backend.aconAfterBatchNormBackward(
          sx, gradient: g, scale: scale, shift: shift, mean: mean, p1: s1, p2: s2, beta: sb,
          layout: layout, gate: gate, dz: dx, normSums: normSums, p1Gradient: dp1,
          p2Gradient: dp2, betaGradient: dbeta)
      }
      // meta-ACON: through the generator to the pooled means; their gradient reaches z as a
      // constant per plane, dmean / (H W).
      var pooledGradient: Tensor?
      if let pooled, betaUsed.node != nil {
        try betaUsed.backward(seed: dbeta)
        pooledGradient = pooled.grad
      }
      // Pass 2: the batch norm's gradients from the sums, with the constants folded in, and dx
      // from dz in place.
      let (dw, db) = (g.empty([c]), g.empty([c]))
      backend.batchNormAfterACONBackward(
        sx, dz: dx, normSums: normSums, mean: mean, invStd: invStd, weight: sw, training: training,
        pooledGradient: pooledGradient, centredPlaneMeans: xMeans, inputGradient: needX ? dx : nil,
        weightGradient: dw, biasGradient: db)
      return [needX ? dx : nil, dw, db, dp1, dp2, pooled == nil ? dbeta : nil]
    }
  }
}
