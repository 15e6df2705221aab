import ACONKernels
import ACONTensor
#if canImport(Glibc)
import Glibc
#endif

/// Whether layers run fused with the batch norm before them (BN + ReLU, BN + ACON-C, BN +
/// meta-ACON). On by default; the switch is per thread so that a test or benchmark can compare
/// the fused and the separate layers without disturbing other threads.
public enum LayerFusion {
  private static let key: pthread_key_t = {
    var k = pthread_key_t()
    pthread_key_create(&k, nil)
    return k
  }()

  /// True unless the calling thread is inside ``withoutLayerFusion(_:)``.
  public static var isEnabled: Bool { Int(bitPattern: pthread_getspecific(key)) == 0 }

  fileprivate static var depthDisabled: Int {
    get { Int(bitPattern: pthread_getspecific(key)) }
    set { pthread_setspecific(key, UnsafeRawPointer(bitPattern: newValue)) }
  }
}

/// Runs `body` with every layer separate (no BN + activation fusion) on the calling thread.
public func withoutLayerFusion<T>(_ body: () throws -> T) rethrows -> T {
  LayerFusion.depthDisabled += 1
  defer { LayerFusion.depthDisabled -= 1 }
  return try body()
}

/// An activation with a fused path after a batch norm.
public protocol FusesAfterBatchNorm: Module {
  /// `self(batchNorm(x))` as one op, or nil where this input has no fused path (the caller
  /// then runs the two layers separately).
  func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor?
}

extension BatchNorm2d {
  /// `activation(self(x))`: one fused op when ``LayerFusion`` is on and the activation has a
  /// fused path (``FusesAfterBatchNorm``), else the two layers in turn. Same values, gradients
  /// and running-statistics updates either way.
  public func forward(_ x: Tensor, then activation: Module) throws -> Tensor {
    if LayerFusion.isEnabled, let fusable = activation as? FusesAfterBatchNorm,
      let y = try fusable.forward(afterBatchNorm: self, x)
    {
      return y
    }
    return try activation(self(x))
  }

  /// `relu(self(x))`, fused when ``LayerFusion`` is on.
  public func forwardThenReLU(_ x: Tensor) throws -> Tensor {
    LayerFusion.isEnabled ? try forwardWithReLU(x) : try self(x).relu()
  }

  /// `relu(self(x) + residual)`, the end of a residual block, fused when ``LayerFusion`` is on.
  public func forward(_ x: Tensor, addingThenReLU residual: Tensor) throws -> Tensor {
    if LayerFusion.isEnabled { return try forwardWithResidualReLU(x, residual: residual) }
    return try (self(x) + residual).relu()
  }

  /// The fused batch norm + ACON of this layer's state (see
  /// ``ACONTensor/Tensor/batchNormAcon(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:p1:p2:beta:gate:generator:)``).
  func forwardAcon(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor?, gate: ACONGate,
    generator: ((Tensor) throws -> Tensor)?
  ) throws -> Tensor {
    let y = try Tensor.batchNormAcon(
      x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
      runningVariance: runningVariance.value, training: isTraining, momentum: momentum,
      epsilon: epsilon, p1: p1, p2: p2, beta: beta, gate: gate, generator: generator)
    if isTraining { batchesTracked.increment() }
    return y
  }
}

extension ReLU: FusesAfterBatchNorm {
  public func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor? {
    try batchNorm.forwardWithReLU(x)
  }
}

extension AconC: FusesAfterBatchNorm {
  public func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor? {
    // Statistics across replicas: the two layers run separately (the fused op has no such path).
    guard x.rank == 4, !(batchNorm.isTraining && BatchNormReplicas.reducer != nil) else { return nil }
    try checkActivationInput("AconC", x, channels: channels)
    return try batchNorm.forwardAcon(
      x, p1: p1.value, p2: p2.value, beta: beta.value, gate: gate, generator: nil)
  }
}

extension MetaAconC: FusesAfterBatchNorm {
  public func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor? {
    guard x.rank == 4, generator != .pixel, !(batchNorm.isTraining && BatchNormReplicas.reducer != nil)
    else { return nil }
    try checkActivationInput("MetaAconC", x, channels: channels)
    try checkBatch(x)
    return try batchNorm.forwardAcon(
      x, p1: p1.value, p2: p2.value, beta: nil, gate: gate, generator: planeGenerator)
  }
}

extension Tensor {
  /// Batch norm followed by ACON-C (or meta-ACON channel-wise) as one op:
  /// `acon(batchNorm(x))` with the values, gradients and running-statistics updates of
  /// `batchNorm(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:fusedReLU:)`
  /// then ``acon(_:p1:p2:beta:gate:)`` (or ``metaAcon(_:p1:p2:gate:generator:)``), in fewer
  /// passes over memory and keeping only `x` (see ``ACONKernel/forwardAfterBatchNorm(_:_:geometry:scale:shift:p1:p2:beta:layout:gate:)``).
  ///
  /// - `x`: `[N, C, H, W]`; `weight`, `bias`, the running statistics: `[C]`.
  /// - `p1`, `p2`: one value per channel. Give `beta` (one per channel) for ACON-C, or
  ///   `generator` for meta-ACON: it maps the pooled means of the normalised input,
  ///   `[N, C, 1, 1]`, to beta `[N, C, 1, 1]` with recorded ops, as in `metaAcon`.
  public static func batchNormAcon(
    _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    training: Bool, momentum: Float, epsilon: Float, p1: Tensor, p2: Tensor, beta: Tensor?,
    gate: ACONGate = .sigmoid, generator: ((Tensor) throws -> Tensor)? = nil
  ) throws -> Tensor {
    let op = "batchNorm_acon"
    if training && BatchNormReplicas.reducer != nil {
      throw TensorError.invalidArgument(
        operation: op, detail: "no batch statistics across replicas in the fused op; run the layers unfused")
    }
    guard x.rank == 4 else {
      throw TensorError.shapeMismatch(operation: op, shapes: [x.shape], detail: "expects [N, C, H, W] input")
    }
    guard (beta == nil) != (generator == nil) else {
      throw TensorError.invalidArgument(operation: op, detail: "give beta or a generator, not both")
    }
    let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    let xMeans = Tensor(uninitializedShape: [n, c])
    let (mean, invStd) = try batchNormStatistics(
      op, x, weight: weight, bias: bias, runningMean: runningMean,
      runningVariance: runningVariance, training: training, momentum: momentum, epsilon: epsilon,
      planeMeans: generator != nil && training ? xMeans : nil)
    if generator != nil && !training {
      ACONKernel.planeMeans(x.data, planes: n * c, plane: plane, into: xMeans.mutableData)
    }
    let scale = Tensor(uninitializedShape: [c])
    let shift = Tensor(uninitializedShape: [c])
    BatchNormKernel.affineCoefficients(
      channels: c, mean: mean.data, invStd: invStd.data, weight: weight.data, bias: bias.data,
      scale: scale.mutableData, shift: shift.mutableData)

    // beta: the parameter, or the generator's output from the pooled normalised input, whose
    // plane means are the affine map of x's (its tape starts at the `pooled` leaf).
    var pooled: Parameter?
    let betaUsed: Tensor
    if let generator {
      let means = Tensor(uninitializedShape: [n, c, 1, 1])
      let (mp, xp, sp, hp) = (means.mutableData, xMeans.data, scale.data, shift.data)
      for q in 0..<(n * c) { mp[q] = hp[q % c].addingProduct(xp[q], sp[q % c]) }
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
    let (geometry, layout) = try aconPlan(op, x, p1, p2, betaUsed)
    let out = Tensor(uninitializedShape: x.shape)
    ACONKernel.forwardAfterBatchNorm(
      x.data, out.mutableData, geometry: geometry, scale: scale.data, shift: shift.data,
      p1: p1.data, p2: p2.data, beta: betaUsed.data, layout: layout, gate: gate.kernelGate)

    let (sx, sw, s1, s2, sb) = (x.detached, weight.detached, p1.detached, p2.detached, betaUsed.detached)
    let needX = x.node != nil
    let count = Double(n * plane)
    return record(op + (training ? "(train)" : "(eval)"), output: out, inputs: [x, weight, bias, p1, p2, betaUsed]) { g in
      // Pass 1: dz (into dx's buffer) and the ACON's and the batch norm's sums per plane.
      let dx = Tensor(uninitializedShape: sx.shape)
      let sums = Tensor(uninitializedShape: [3 * n * c])
      let normSums = Tensor(uninitializedShape: [2 * n * c])
      ACONKernel.backwardAfterBatchNorm(
        sx.data, g.data, dz: dx.mutableData, geometry: geometry, scale: scale.data,
        shift: shift.data, mean: mean.data, p1: s1.data, p2: s2.data, beta: sb.data,
        layout: layout, gate: gate.kernelGate, planeSums: sums.mutableData, normSums: normSums.mutableData)
      let dp1 = Tensor(uninitializedShape: s1.shape)
      let dp2 = Tensor(uninitializedShape: s2.shape)
      let dbeta = Tensor(uninitializedShape: sb.shape)
      ACONKernel.reduceParameterGradients(
        planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
        dbeta: dbeta.mutableData, dbetaCount: sb.count, layout: layout)
      // meta-ACON: through the generator to the pooled means; their gradient reaches z as a
      // constant per plane, dmean / (H W).
      var constants: Tensor?
      if let pooled, betaUsed.node != nil {
        try? betaUsed.backward(seed: dbeta)
        if let dpooled = pooled.grad {
          let k = Tensor(uninitializedShape: [n * c])
          for q in 0..<(n * c) { k.mutableData[q] = dpooled.data[q] / Float(plane) }
          constants = k
        }
      }
      // The batch norm's backward from the sums, with the constants folded in: a constant k
      // per plane adds plane * k to sum dz and k * sum (x - mean) to sum dz (x - mean).
      let dw = Tensor(uninitializedShape: [c])
      let db = Tensor(uninitializedShape: [c])
      let (kq, qq, rq) = (Tensor(uninitializedShape: [c]), Tensor(uninitializedShape: [c]), Tensor(uninitializedShape: [c]))
      let (ns, mu, inv, w) = (normSums.data, mean.data, invStd.data, sw.data)
      for ch in 0..<c {
        var sumDz = 0.0
        var sumDzXc = 0.0
        for b in 0..<n {
          let q = b * c + ch
          sumDz += Double(ns[2 * q])
          sumDzXc += Double(ns[2 * q + 1])
          if let constants {
            let k = Double(constants.data[q])
            sumDz += Double(plane) * k
            sumDzXc += k * Double(plane) * (Double(xMeans.data[q]) - Double(mu[ch]))
          }
        }
        let sumDzXhat = sumDzXc * Double(inv[ch])
        db.mutableData[ch] = Float(sumDz)
        dw.mutableData[ch] = Float(sumDzXhat)
        let k = w[ch] * inv[ch]
        kq.mutableData[ch] = k
        if training {
          let a = Float(sumDz / count)
          let bq = Float(sumDzXhat / count) * inv[ch]
          (qq.mutableData[ch], rq.mutableData[ch]) = (-k * bq, k * (mu[ch] * bq - a))
        } else {
          (qq.mutableData[ch], rq.mutableData[ch]) = (0, 0)
        }
      }
      // Pass 2, in place: dx from dz.
      if needX {
        BatchNormKernel.applyGradient(
          sx.data, dx.data, dx: dx.mutableData, batch: n, channels: c, plane: plane, k: kq.data,
          q: qq.data, r: rq.data, planeConstants: constants?.data)
      }
      return [needX ? dx : nil, dw, db, dp1, dp2, pooled == nil ? dbeta : nil]
    }
  }
}
