import ACONKernels

/// ``Device/cpu``'s backend: the vectorised kernels of `ACONKernels`, split across the cores by
/// their worker pool, with BLAS for matrix products.
public final class CPUBackend: ComputeBackend {
  public let name = "cpu"

  init() {}

  // MARK: Memory

  public func fill(_ out: Tensor, with value: Float) {
    ElementwiseKernel.fill(out.mutableData, count: out.count, value: value)
  }

  public func copy(_ x: Tensor, into out: Tensor) {
    ElementwiseKernel.copy(x.data, out.mutableData, count: x.count)
  }

  public func copyBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int
  ) {
    let (src, dst) = (source.data + sourceStart, destination.mutableData + destinationStart)
    if blocks == 1 {
      ElementwiseKernel.copy(src, dst, count: length)
      return
    }
    Parallel.forRanges(blocks, minimumChunk: max(1, 16384 / max(length, 1))) { range in
      for i in range {
        (dst + i * destinationStride).update(from: src + i * sourceStride, count: length)
      }
    }
  }

  public func addBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int
  ) {
    ElementwiseKernel.addBlocks(
      source.data + sourceStart, sourceStride: sourceStride,
      into: destination.mutableData + destinationStart, destinationStride: destinationStride,
      blocks: blocks, length: length)
  }

  public func fillBlocks(
    _ out: Tensor, with value: Float, start: Int, stride: Int, blocks: Int, length: Int
  ) {
    let dst = out.mutableData + start
    Parallel.forRanges(blocks, minimumChunk: max(1, 16384 / max(length, 1))) { range in
      for i in range { (dst + i * stride).update(repeating: value, count: length) }
    }
  }

  // MARK: Elementwise

  public func binary(_ op: BinaryOperation, _ a: Tensor, _ b: Tensor, into out: Tensor) {
    switch op {
    case .add: broadcast(a, b, out) { $0 + $1 }
    case .subtract: broadcast(a, b, out) { $0 - $1 }
    case .multiply: broadcast(a, b, out) { $0 * $1 }
    }
  }

  /// Applies `f` elementwise with broadcasting, one coalesced contiguous run at a time.
  @inline(__always)
  private func broadcast(_ a: Tensor, _ b: Tensor, _ out: Tensor, _ f: (Float8, Float8) -> Float8) {
    if a.shape == b.shape {
      ElementwiseKernel.zip(a.data, b.data, out.mutableData, count: a.count, f)
      return
    }
    let plan = try! BroadcastPlan.make("broadcast", a.shape, b.shape)
    let n = plan.shape.last!
    let sa = plan.stridesA.last!
    let sb = plan.stridesB.last!
    let (pa, pb, po) = (a.data, b.data, out.mutableData)
    plan.forEachRun { oa, ob, oo in
      let x = pa + oa
      let y = pb + ob
      let z = po + oo
      if sa == 1 && sb == 1 {
        forEachVector(n) { i, l in
          store8(f(load8(x + i, lanes: l), load8(y + i, lanes: l)), z + i, lanes: l)
        }
      } else if sa == 1 {
        let v = Float8(repeating: y[0])
        forEachVector(n) { i, l in store8(f(load8(x + i, lanes: l), v), z + i, lanes: l) }
      } else if sb == 1 {
        let v = Float8(repeating: x[0])
        forEachVector(n) { i, l in store8(f(v, load8(y + i, lanes: l)), z + i, lanes: l) }
      } else {
        let v = f(Float8(repeating: x[0]), Float8(repeating: y[0]))
        for i in 0..<n { z[i] = v[0] }
      }
    }
  }

  public func affine(_ x: Tensor, scale alpha: Float, shift c: Float, into out: Tensor) {
    let (a, v) = (Float8(repeating: alpha), Float8(repeating: c))
    if c == 0 {
      ElementwiseKernel.scale(x.data, by: alpha, out.mutableData, count: x.count)
    } else if alpha == 1 {
      ElementwiseKernel.map(x.data, out.mutableData, count: x.count) { $0 + v }
    } else {
      ElementwiseKernel.map(x.data, out.mutableData, count: x.count) { $0 * a + v }
    }
  }

  public func reduce(_ x: Tensor, toShapeOf out: Tensor) {
    let plan = try! BroadcastPlan.make("sum", x.shape, out.shape)
    ElementwiseKernel.fill(out.mutableData, count: out.count, value: 0)
    let n = plan.shape.last!
    let st = plan.stridesB.last!
    let (pg, po) = (x.data, out.mutableData)
    plan.forEachRun { og, ot, _ in
      let x = pg + og
      if st == 1 {
        ElementwiseKernel.axpy(alpha: 1, x, po + ot, count: n)
      } else {
        po[ot] += ElementwiseKernel.sum(x, count: n)
      }
    }
  }

  public func sum(_ x: Tensor) -> Float { ElementwiseKernel.sum(x.data, count: x.count) }

  public func relu(_ x: Tensor, into out: Tensor) {
    ElementwiseKernel.relu(x.data, out.mutableData, count: x.count)
  }

  public func reluBackward(output: Tensor, gradient g: Tensor, into dx: Tensor) {
    ElementwiseKernel.reluBackward(output.data, g.data, dx.mutableData, count: g.count)
  }

  public func sigmoid(_ x: Tensor, into out: Tensor) {
    ElementwiseKernel.sigmoid(x.data, out.mutableData, count: x.count)
  }

  public func sigmoidBackward(output: Tensor, gradient g: Tensor, into dx: Tensor) {
    ElementwiseKernel.sigmoidBackward(output: output.data, g.data, dx.mutableData, count: g.count)
  }

  public func planeMeans(_ x: Tensor, centres: Tensor?, planes: Int, plane: Int, into means: Tensor)
  {
    // Centring inside the sum keeps the means exact when x is far from zero against its spread.
    ACONKernel.planeMeans(
      x.data, planes: planes, plane: plane, into: means.mutableData, centres: centres?.data,
      channels: centres?.count ?? 1)
  }

  public func spreadPlanes(
    _ values: Tensor, scale: Float, planes: Int, plane: Int, into out: Tensor
  ) {
    let (gp, dp) = (values.data, out.mutableData)
    Parallel.forRanges(planes, minimumChunk: max(1, 16384 / max(plane, 1))) { range in
      for i in range { (dp + i * plane).update(repeating: gp[i] * scale, count: plane) }
    }
  }

  // MARK: Linear algebra, convolution, pooling

  public func matrixMultiply(
    _ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
    m: Int, n: Int, k: Int, beta: Float, into c: Tensor
  ) {
    BLAS.sgemm(
      transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a.data,
      lda: transposeA ? m : k, b: b.data, ldb: transposeB ? k : n, beta: beta,
      c: c.mutableData, ldc: n)
  }

  private func kind(_ g: ConvGeometry) -> String {
    g.isDepthwise
      ? "conv depthwise"
      : ConvolutionKernel.runsWinograd(g)
        ? "conv winograd" : g.isPointwise ? "conv 1x1" : "conv im2col"
  }

  public func convolutionForward(
    _ g: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor
  ) {
    let operands = input.count + weight.count + out.count
    ScratchArena.withScratch(ConvolutionKernel.forwardWorkspaceCount(g)) { workspace in
      Profiler.time(
        "kernel fwd", kind(g), flops: 2 * Double(g.multiplyAdds), bytes: Double(4 * operands)
      ) {
        ConvolutionKernel.forward(
          g, input: input.data, weight: weight.data, bias: bias?.data, output: out.mutableData,
          workspace: workspace ?? out.mutableData)
      }
    }
  }

  public func convolutionAccumulatesInputGradient(_ g: ConvGeometry) -> Bool {
    ConvolutionKernel.accumulatesInputGradient(g)
  }

  public func convolutionBackward(
    _ g: ConvGeometry, input: Tensor?, weight: Tensor?, outputGradient dy: Tensor,
    inputGradient dx: Tensor?, accumulatingInputGradient: Bool, weightGradient dw: Tensor?,
    biasGradient db: Tensor?
  ) {
    let count = dx != nil || dw != nil ? ConvolutionKernel.backwardWorkspaceCount(g) : 0
    // An unused pointer argument still needs a valid address; dy's storage serves.
    let anyPointer = dy.data
    // One product per gradient asked for; operands: x, w and dy read, dx and dw written.
    let products = (dx != nil ? 1 : 0) + (dw != nil ? 1 : 0)
    let operands =
      dy.count + (input?.count ?? 0) + (weight?.count ?? 0) + (dx?.count ?? 0) + (dw?.count ?? 0)
    ScratchArena.withScratch(count) { workspace in
      Profiler.time(
        "kernel bwd", kind(g), flops: Double(2 * products * g.multiplyAdds),
        bytes: Double(4 * operands)
      ) {
        ConvolutionKernel.backward(
          g, input: input?.data ?? anyPointer, weight: weight?.data ?? anyPointer,
          outputGrad: dy.data, inputGrad: dx?.mutableData, weightGrad: dw?.mutableData,
          biasGrad: db?.mutableData, workspace: workspace ?? dy.mutableData,
          accumulatingInputGrad: accumulatingInputGradient)
      }
    }
  }

  // Max-pool indices are Int32 in a Float tensor's storage (same size and alignment, so that
  // they come from the buffer pool): bound to Int32 only while a kernel uses them.
  public func maxPoolForward(
    _ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor, indices: Tensor
  ) {
    indices.mutableData.withMemoryRebound(to: Int32.self, capacity: indices.count) { i in
      PoolingKernel.maxForward(
        x.data, out.mutableData, indices: i, planes: planes, geometry: geometry)
    }
  }

  public func maxPoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor) {
    PoolingKernel.maxForward(x.data, out.mutableData, planes: planes, geometry: geometry)
  }

  public func maxPoolBackward(
    _ dy: Tensor, indices: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor
  ) {
    indices.data.withMemoryRebound(to: Int32.self, capacity: indices.count) { i in
      PoolingKernel.maxBackward(
        dy.data, indices: i, dx.mutableData, planes: planes, geometry: geometry)
    }
  }

  public func averagePoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor)
  {
    PoolingKernel.averageForward(x.data, out.mutableData, planes: planes, geometry: geometry)
  }

  public func averagePoolBackward(
    _ dy: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor
  ) {
    PoolingKernel.averageBackward(dy.data, dx.mutableData, planes: planes, geometry: geometry)
  }

  // MARK: Batch normalisation

  private func dims(_ x: Tensor) -> (n: Int, c: Int, plane: Int) {
    (x.shape[0], x.shape[1], x.rank == 4 ? x.shape[2] * x.shape[3] : 1)
  }

  public func batchNormTrainingStatistics(
    _ x: Tensor, epsilon: Float, momentum: Float, runningMean: Tensor?, runningVariance: Tensor?,
    replicas: (any BatchNormReplicaReducer)?, mean: Tensor, invStd: Tensor,
    centredPlaneMeans: Tensor?
  ) {
    let (n, c, plane) = dims(x)
    let variance = mean.empty([c])
    let (mp, vp, ip) = (mean.mutableData, variance.mutableData, invStd.mutableData)
    BatchNormKernel.statistics(
      x.data, batch: n, channels: c, plane: plane, mean: mp, variance: vp,
      centredPlaneMeans: centredPlaneMeans?.mutableData)
    var m = n * plane
    if let replicas {
      let local = mean.scalars
      let whole = replicas.combine(count: m, mean: local, variance: variance.scalars)
      m = whole.count
      mp.update(from: whole.mean, count: c)
      vp.update(from: whole.variance, count: c)
      // The plane means were centred on this replica's mean: re-centre them on the whole's.
      if let centredPlaneMeans {
        let cp = centredPlaneMeans.mutableData
        for q in 0..<(n * c) {
          cp[q] = Float(Double(cp[q]) + Double(local[q % c]) - Double(whole.mean[q % c]))
        }
      }
    }
    for ch in 0..<c { ip[ch] = 1 / (vp[ch] + epsilon).squareRoot() }
    if let runningMean, let runningVariance {
      let (rm, rv) = (runningMean.mutableData, runningVariance.mutableData)
      let unbias = Float(m) / Float(m - 1)
      for ch in 0..<c {
        rm[ch] = (1 - momentum) * rm[ch] + momentum * mp[ch]
        rv[ch] = (1 - momentum) * rv[ch] + momentum * vp[ch] * unbias
      }
    }
  }

  public func batchNormEvaluationStatistics(
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, mean: Tensor, invStd: Tensor
  ) -> Int? {
    let (rm, rv, mp, ip) = (
      runningMean.data, runningVariance.data, mean.mutableData, invStd.mutableData
    )
    for ch in 0..<mean.count {
      guard rv[ch] + epsilon > 0 else { return ch }
      mp[ch] = rm[ch]
      ip[ch] = 1 / (rv[ch] + epsilon).squareRoot()
    }
    return nil
  }

  public func batchNormFoldedIntoConvolution(
    weight: Tensor, bias: Tensor?, batchNormWeight: Tensor, batchNormBias: Tensor,
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, foldedWeight: Tensor,
    foldedBias: Tensor
  ) -> Int? {
    let channels = foldedBias.count
    let perChannel = weight.count / channels
    let (w, b, g, beta) = (weight.data, bias?.data, batchNormWeight.data, batchNormBias.data)
    let (rm, rv, fw, fb) = (
      runningMean.data, runningVariance.data, foldedWeight.mutableData, foldedBias.mutableData
    )
    for ch in 0..<channels {
      guard rv[ch] + epsilon > 0 else { return ch }
      let scale = g[ch] * (1 / (rv[ch] + epsilon).squareRoot())
      let shift = beta[ch] - rm[ch] * scale
      fb[ch] = b.map { $0[ch] * scale + shift } ?? shift
      for k in ch * perChannel..<(ch + 1) * perChannel { fw[k] = w[k] * scale }
    }
    return nil
  }

  public func batchNormNormalize(
    _ x: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor?, bias: Tensor?, relu: Bool,
    residual: Tensor?, into out: Tensor
  ) {
    let (n, c, plane) = dims(x)
    BatchNormKernel.normalize(
      x.data, out.mutableData, batch: n, channels: c, plane: plane, mean: mean.data,
      invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
      residual: residual?.data)
  }

  public func batchNormBackward(
    _ x: Tensor, gradient g: Tensor, training: Bool, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, relu: Bool, replicas: (any BatchNormReplicaReducer)?,
    inputGradient dx: Tensor?, weightGradient dw: Tensor?, biasGradient db: Tensor?
  ) {
    let (n, c, plane) = dims(x)
    if training, let replicas {
      // This batch's sums (the evaluation kernel's weight and bias gradients), local as in
      // PyTorch's SyncBatchNorm; their sums over the replicas give the input gradient.
      let sumDy = g.empty([c])
      let sumDyXhat = g.empty([c])
      BatchNormKernel.backwardEval(
        x.data, g.data, dx: nil, batch: n, channels: c, plane: plane, mean: mean.data,
        invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
        dweight: sumDyXhat.mutableData, dbias: sumDy.mutableData)
      dw?.mutableData.update(from: sumDyXhat.data, count: c)
      db?.mutableData.update(from: sumDy.data, count: c)
      guard let dx else { return }
      let total = replicas.sum(sumDy.scalars + sumDyXhat.scalars + [Float(n * plane)])
      BatchNormKernel.inputGradientFromSums(
        x.data, g.data, dx: dx.mutableData, batch: n, channels: c, plane: plane, mean: mean.data,
        invStd: invStd.data, weight: weight?.data, bias: bias?.data, relu: relu,
        sumDy: Array(total[0..<c]), sumDyXhat: Array(total[c..<(2 * c)]), count: Int(total[2 * c]))
      return
    }
    let kernel = training ? BatchNormKernel.backwardTraining : BatchNormKernel.backwardEval
    kernel(
      x.data, g.data, dx?.mutableData, n, c, plane, mean.data, invStd.data, weight?.data,
      bias?.data, relu, dw?.mutableData, db?.mutableData)
  }

  public func batchNormAddReLUBackward(
    _ x: Tensor, output: Tensor, gradient g: Tensor, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, gatedGradient dz: Tensor, inputGradient dx: Tensor?,
    weightGradient dw: Tensor?, biasGradient db: Tensor?
  ) {
    let (n, c, plane) = dims(x)
    BatchNormKernel.backwardTrainingAfterResidualReLU(
      x.data, output: output.data, g.data, dz: dz.mutableData, dx: dx?.mutableData, batch: n,
      channels: c, plane: plane, mean: mean.data, invStd: invStd.data, weight: weight?.data,
      bias: bias?.data, dweight: dw?.mutableData, dbias: db?.mutableData)
  }

  // MARK: The ACON family

  private func geometry(_ x: Tensor) -> ACONKernel.Geometry {
    let (n, c, plane) = dims(x)
    return ACONKernel.Geometry(batch: n, channels: c, plane: plane)
  }

  public func aconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout,
    gate: ACONGate, into out: Tensor
  ) {
    ACONKernel.forward(
      x.data, out.mutableData, geometry: geometry(x), p1: p1.data, p2: p2.data, beta: beta.data,
      layout: layout, gate: gate.kernelGate)
  }

  public func aconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor,
    p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let geometry = geometry(x)
    let sums = x.empty([3 * geometry.batch * geometry.channels])
    let perElement = layout.elementStride != 0 && geometry.plane > 1
    ACONKernel.backward(
      x.data, g.data, dx.mutableData, geometry: geometry, p1: p1.data, p2: p2.data,
      beta: beta.data, layout: layout, gate: gate.kernelGate, planeSums: sums.mutableData,
      dbetaElements: perElement ? dbeta.mutableData : nil)
    ACONKernel.reduceParameterGradients(
      planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
      dbeta: perElement ? nil : dbeta.mutableData, dbetaCount: beta.count, layout: layout)
  }

  public func aconAfterBatchNormForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, into out: Tensor
  ) {
    ACONKernel.forwardAfterBatchNorm(
      x.data, out.mutableData, geometry: geometry(x), scale: scale.data, shift: shift.data,
      p1: p1.data, p2: p2.data, beta: beta.data, layout: layout, gate: gate.kernelGate)
  }

  public func aconAfterBatchNormBackward(
    _ x: Tensor, gradient g: Tensor, scale: Tensor, shift: Tensor, mean: Tensor, p1: Tensor,
    p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor,
    normSums: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let geometry = geometry(x)
    let sums = x.empty([3 * geometry.batch * geometry.channels])
    ACONKernel.backwardAfterBatchNorm(
      x.data, g.data, dz: dz.mutableData, geometry: geometry, scale: scale.data,
      shift: shift.data, mean: mean.data, p1: p1.data, p2: p2.data, beta: beta.data,
      layout: layout, gate: gate.kernelGate, planeSums: sums.mutableData,
      normSums: normSums.mutableData)
    ACONKernel.reduceParameterGradients(
      planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
      dbeta: dbeta.mutableData, dbetaCount: beta.count, layout: layout)
  }

  public func fusesMaxPoolAfterBatchNormACON(_ x: Tensor, pool: PoolGeometry) -> Bool {
    ACONKernel.fusesMaxPool(geometry(x))
  }

  public func aconAfterBatchNormMaxPoolForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, pool: PoolGeometry, into pooled: Tensor,
    indices: Tensor
  ) {
    indices.mutableData.withMemoryRebound(to: Int32.self, capacity: indices.count) { i in
      ACONKernel.forwardAfterBatchNormThenMaxPool(
        x.data, pooled: pooled.mutableData, indices: i, geometry: geometry(x), pool: pool,
        scale: scale.data, shift: shift.data, p1: p1.data, p2: p2.data, beta: beta.data,
        layout: layout, gate: gate.kernelGate)
    }
  }

  public func aconAfterBatchNormBackward(
    _ x: Tensor, pooledGradient: Tensor, indices: Tensor, pool: PoolGeometry, scale: Tensor,
    shift: Tensor, mean: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor, normSums: Tensor,
    p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let geometry = geometry(x)
    let sums = x.empty([3 * geometry.batch * geometry.channels])
    indices.data.withMemoryRebound(to: Int32.self, capacity: indices.count) { i in
      ACONKernel.backwardAfterBatchNormThroughMaxPool(
        x.data, pooledGradient: pooledGradient.data, indices: i, dz: dz.mutableData,
        geometry: geometry, pool: pool, scale: scale.data, shift: shift.data, mean: mean.data,
        p1: p1.data, p2: p2.data, beta: beta.data, layout: layout, gate: gate.kernelGate,
        planeSums: sums.mutableData, normSums: normSums.mutableData)
    }
    ACONKernel.reduceParameterGradients(
      planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
      dbeta: dbeta.mutableData, dbetaCount: beta.count, layout: layout)
  }

  public func batchNormAffine(
    mean: Tensor, invStd: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor
  ) {
    BatchNormKernel.affineCoefficients(
      channels: mean.count, mean: mean.data, invStd: invStd.data, weight: weight.data,
      bias: bias.data, scale: scale.mutableData, shift: shift.mutableData)
  }

  public func batchNormPooledMeans(
    centredPlaneMeans: Tensor, scale: Tensor, bias: Tensor, into means: Tensor
  ) {
    let c = scale.count
    let (mp, xp, sp, bp) = (means.mutableData, centredPlaneMeans.data, scale.data, bias.data)
    for q in 0..<means.count { mp[q] = bp[q % c].plusProduct(xp[q], sp[q % c]) }
  }

  public func batchNormAfterACONBackward(
    _ x: Tensor, dz: Tensor, normSums: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor,
    training: Bool, pooledGradient: Tensor?, centredPlaneMeans: Tensor?, inputGradient dx: Tensor?,
    weightGradient dw: Tensor, biasGradient db: Tensor
  ) {
    let (n, c, plane) = dims(x)
    let count = Double(n * plane)
    // A constant k per plane adds plane * k to sum dz and k * sum (x - mean) to sum dz (x - mean).
    // (Pointers taken once: a tensor's `data` in these loops retained its storage per access,
    // 3,000 times a call for a [32, 96] generator, a third of the pass.)
    let constants: Tensor? = pooledGradient.map { dpooled in
      let k = dz.empty([n * c])
      let (kp, gp) = (k.mutableData, dpooled.data)
      for q in 0..<(n * c) { kp[q] = gp[q] / Float(plane) }
      return k
    }
    let (kq, qq, rq) = (dz.empty([c]), dz.empty([c]), dz.empty([c]))
    let (ns, inv, w) = (normSums.data, invStd.data, weight.data)
    let (kp, qp, rp, dwp, dbp) = (
      kq.mutableData, qq.mutableData, rq.mutableData, dw.mutableData, db.mutableData
    )
    let planeConstants = constants?.data
    let planeMeans = centredPlaneMeans?.data
    // Image by image, the channels side by side: the sums are read in memory order (channel by
    // channel, 1024 channels put each image's sums 8 KB apart), each channel's added in the
    // same order.
    var sums = [Double](repeating: 0, count: 2 * c)
    for b in 0..<n {
      for ch in 0..<c {
        let q = b * c + ch
        sums[2 * ch] += Double(ns[2 * q])
        sums[2 * ch + 1] += Double(ns[2 * q + 1])
        if let planeConstants, let planeMeans {
          let k = Double(planeConstants[q])
          sums[2 * ch] += Double(plane) * k
          sums[2 * ch + 1] += k * Double(plane) * Double(planeMeans[q])
        }
      }
    }
    for ch in 0..<c {
      let (sumDz, sumDzXc) = (sums[2 * ch], sums[2 * ch + 1])
      let sumDzXhat = sumDzXc * Double(inv[ch])
      dbp[ch] = Float(sumDz)
      dwp[ch] = Float(sumDzXhat)
      if training {
        (kp[ch], qp[ch], rp[ch]) = BatchNormKernel.trainingCoefficients(
          weight: w[ch], invStd: inv[ch], sumDy: sumDz, sumDyXhat: sumDzXhat, count: count)
      } else {
        (kp[ch], qp[ch], rp[ch]) = (w[ch] * inv[ch], 0, 0)
      }
    }
    // dx from dz, in place: dx = (dz + constant) k + (x - mean) q + r per plane; centring x
    // first keeps two terms of the input's magnitude from cancelling.
    if let dx {
      BatchNormKernel.applyGradient(
        x.data, dz.data, dx: dx.mutableData, batch: n, channels: c, plane: plane,
        mean: mean.data, k: kq.data, q: qq.data, r: rq.data, planeConstants: constants?.data)
    }
  }

  public func smoothMaximumForward(_ a: Tensor, _ b: Tensor, into out: Tensor) {
    ACONKernel.smoothMaximumForward(a.data, b.data, out.mutableData, count: a.count)
  }

  public func smoothMaximumBackward(
    _ a: Tensor, _ b: Tensor, gradient g: Tensor, aGradient da: Tensor, bGradient db: Tensor
  ) {
    ACONKernel.smoothMaximumBackward(
      a.data, b.data, g.data, da: da.mutableData, db: db.mutableData, count: a.count)
  }

  public func pixelAconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor, gate: ACONGate,
    into out: Tensor
  ) {
    ACONKernel.pixelForward(
      x.data, out.mutableData, geometry: geometry(x), p1: p1.data, p2: p2.data,
      weight: weight.data, bias: bias.data, gate: gate.kernelGate)
  }

  public func pixelAconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor,
    gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor,
    weightGradient dw: Tensor, biasGradient db: Tensor
  ) {
    let geometry = geometry(x)
    let sums = x.empty([4 * geometry.batch * geometry.channels])
    ACONKernel.pixelBackward(
      x.data, g.data, dx.mutableData, geometry: geometry, p1: p1.data, p2: p2.data,
      weight: weight.data, bias: bias.data, gate: gate.kernelGate, planeSums: sums.mutableData)
    ACONKernel.reducePixelGradients(
      planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
      dweight: dw.mutableData, dbias: db.mutableData)
  }

  public func addPlaneConstants(
    _ values: Tensor, scale: Float, planes: Int, plane: Int, to out: Tensor
  ) {
    ACONKernel.addPlaneConstants(
      out.mutableData, planes: planes, plane: plane, values: values.data, scale: scale)
  }

  // MARK: Loss, dropout, optimizers

  public func crossEntropyForward(
    _ logits: Tensor, labels: [Int], labelSmoothing epsilon: Float, probabilities: Tensor
  ) -> Float {
    let (n, k) = (logits.shape[0], logits.shape[1])
    var total = 0.0
    let x = logits.data
    let p = probabilities.mutableData
    for i in 0..<n {
      let row = x + i * k
      var m = -Float.infinity
      for j in 0..<k { m = max(m, row[j]) }
      var z = 0.0
      for j in 0..<k {
        let e = exp(Double(row[j] - m))
        p[i * k + j] = Float(e)
        z += e
      }
      let logZ = log(z) + Double(m)
      var sumLogP = 0.0
      for j in 0..<k {
        p[i * k + j] = Float(Double(p[i * k + j]) / z)
        sumLogP += Double(row[j]) - logZ
      }
      let nll = logZ - Double(row[labels[i]])
      total += Double(1 - epsilon) * nll - Double(epsilon) * sumLogP / Double(k)
    }
    return Float(total / Double(n))
  }

  public func crossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing epsilon: Float, scale: Float,
    into dx: Tensor
  ) {
    let (n, k) = (probabilities.shape[0], probabilities.shape[1])
    let (d, pp) = (dx.mutableData, probabilities.data)
    for i in 0..<n {
      for j in 0..<k {
        let target = epsilon / Float(k) + (j == labels[i] ? 1 - epsilon : 0)
        d[i * k + j] = (pp[i * k + j] - target) * scale
      }
    }
  }

  public func dropoutMask(count: Int, probability: Float, seed: UInt64) -> DropoutMask {
    let mask = DropoutMask(count: count)
    if probability < 1 {
      // One seed builds the whole mask, in parallel, the same for any number of cores.
      DropoutKernel.makeMask(mask.bits, count: count, probability: probability, seed: seed)
    } else {
      mask.bits.update(repeating: 0, count: mask.words)
    }
    return mask
  }

  public func applyDropout(_ x: Tensor, mask: DropoutMask, scale: Float, into out: Tensor) {
    DropoutKernel.apply(x.data, mask: mask.bits, scale: scale, out.mutableData, count: x.count)
  }

  public func sgdStep(
    parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, learningRate: Float,
    momentum: Float, weightDecay: Float, firstStep: Bool
  ) {
    OptimizerKernel.sgd(
      parameter: parameter.mutableData, gradient: gradient.data,
      momentumBuffer: momentumBuffer?.mutableData, count: parameter.count,
      learningRate: learningRate, momentum: momentum, weightDecay: weightDecay,
      firstStep: firstStep)
  }

  public func adamStep(
    parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor,
    learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float,
    decoupled: Bool, step: Int
  ) {
    OptimizerKernel.adam(
      parameter: parameter.mutableData, gradient: gradient.data,
      firstMoment: firstMoment.mutableData, secondMoment: secondMoment.mutableData,
      count: parameter.count, learningRate: learningRate, beta1: beta1, beta2: beta2,
      epsilon: epsilon, weightDecay: weightDecay, decoupled: decoupled, step: step)
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
