import ACONKernels
import ACONTensor

/// The differentiable ACON op: the fused kernels of ACONKernels behind `Tensor.record`.
extension Tensor {
  /// ACON-C with a gate: `(p1 - p2) x h(beta (p1 - p2) x) + p2 x`, in one pass.
  ///
  /// - `x`: `[N, C, H, W]` or `[N, C]`.
  /// - `p1`, `p2`: one value per channel (`[1, C, 1, 1]`, `[1, C]` or `[C]`).
  /// - `beta`: broadcastable to `x` along N, C and the spatial plane: `[1, C, 1, 1]` (ACON-C),
  ///   `[N, C, 1, 1]` (meta-ACON channel-wise), `[N, 1, 1, 1]` (layer-wise), `x`'s shape
  ///   (pixel-wise), or the rank-2 forms `[1, C]`, `[N, C]`, `[N, 1]`.
  ///
  /// The pullback keeps only `x` (and the small parameter tensors) and returns gradients for
  /// `x`, `p1`, `p2` and `beta` in their own shapes.
  public static func acon(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor, gate: ACONKernel.Gate = .sigmoid
  ) throws -> Tensor {
    let op = gate == .sigmoid ? "acon" : "acon_hard"
    let (geometry, layout) = try aconPlan(op, x, p1, p2, beta)
    let out = Tensor(uninitializedShape: x.shape)
    ACONKernel.forward(
      x.data, out.mutableData, geometry: geometry, p1: p1.data, p2: p2.data, beta: beta.data,
      layout: layout, gate: gate)
    // Only x and the per-channel (or meta-ACON's per-sample) tensors stay alive for backward.
    let (sx, s1, s2, sb) = (x.detached, p1.detached, p2.detached, beta.detached)
    return record(op, output: out, inputs: [x, p1, p2, beta]) { g in
      let dx = Tensor(uninitializedShape: sx.shape)
      let sums = Tensor(uninitializedShape: [3 * geometry.batch * geometry.channels])
      let perElement = layout.elementStride != 0 && geometry.plane > 1
      let dbeta = Tensor(uninitializedShape: sb.shape)
      ACONKernel.backward(
        sx.data, g.data, dx.mutableData, geometry: geometry, p1: s1.data, p2: s2.data,
        beta: sb.data, layout: layout, gate: gate, planeSums: sums.mutableData,
        dbetaElements: perElement ? dbeta.mutableData : nil)
      let dp1 = Tensor(uninitializedShape: s1.shape)
      let dp2 = Tensor(uninitializedShape: s2.shape)
      ACONKernel.reduceParameterGradients(
        planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
        dbeta: perElement ? nil : dbeta.mutableData, dbetaCount: sb.count, layout: layout)
      return [dx, dp1, dp2, dbeta]
    }
  }

  /// Checks the shapes of an ACON call and works out how the kernel reads beta.
  static func aconPlan(
    _ op: String, _ x: Tensor, _ p1: Tensor, _ p2: Tensor, _ beta: Tensor
  ) throws -> (ACONKernel.Geometry, ACONKernel.BetaLayout) {
    guard x.rank == 4 || x.rank == 2 else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape], detail: "expects x as [N, C, H, W] or [N, C]")
    }
    let n = x.shape[0]
    let c = x.shape[1]
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    for (name, p) in [("p1", p1), ("p2", p2)] where p.count != c || !isPerChannel(p.shape, c) {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, p.shape],
        detail: "\(name) must hold one value per channel ([1, \(c), 1, 1], [1, \(c)] or [\(c)])")
    }
    // beta: [bn, bc, (bh, bw)] with each of bn, bc, plane either 1 or x's size.
    let b = beta.shape
    let spatialOK: Bool
    let betaPlane: Int
    if x.rank == 4 {
      spatialOK = b.count == 4 && ((b[2] == 1 && b[3] == 1) || (b[2] == x.shape[2] && b[3] == x.shape[3]))
      betaPlane = b.count == 4 ? b[2] * b[3] : 0
    } else {
      spatialOK = b.count == 2
      betaPlane = 1
    }
    guard spatialOK, b[0] == 1 || b[0] == n, b[1] == 1 || b[1] == c else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, b],
        detail: "beta must broadcast to x per sample, per channel or per element (same rank)")
    }
    let elementStride = betaPlane > 1 ? 1 : 0
    let channelStride = b[1] > 1 ? betaPlane : 0
    let sampleStride = b[0] > 1 ? b[1] * betaPlane : 0
    let layout = ACONKernel.BetaLayout(
      sampleStride: sampleStride, channelStride: channelStride, elementStride: elementStride)
    return (ACONKernel.Geometry(batch: n, channels: c, plane: plane), layout)
  }

  private static func isPerChannel(_ shape: [Int], _ c: Int) -> Bool {
    shape == [c] || shape == [1, c] || shape == [1, c, 1, 1]
  }

  /// `(a - b) sigmoid(a - b) + b`: the smooth maximum of two tensors of one shape with beta
  /// fixed at 1 (ACON-FReLU's core). The pullback keeps `a` and `b`.
  public static func smoothMaximum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.shape == b.shape else {
      throw TensorError.shapeMismatch(
        operation: "smooth_maximum", shapes: [a.shape, b.shape], detail: "shapes must be equal")
    }
    let out = Tensor(uninitializedShape: a.shape)
    ACONKernel.smoothMaximumForward(a.data, b.data, out.mutableData, count: a.count)
    let (sa, sb) = (a.detached, b.detached)
    return record("smooth_maximum", output: out, inputs: [a, b]) { g in
      let da = Tensor(uninitializedShape: sa.shape)
      let db = Tensor(uninitializedShape: sa.shape)
      ACONKernel.smoothMaximumBackward(
        sa.data, sb.data, g.data, da: da.mutableData, db: db.mutableData, count: sa.count)
      return [da, db]
    }
  }
}

extension Tensor {
  /// meta-ACON with a channel-wise generator, fused: `beta = generator(mean_hw(x))`, then
  /// ACON-C with that beta, with no full-size tensor made besides the output.
  ///
  /// `generator` maps the pooled `[N, C, 1, 1]` tensor to beta `[N, C, 1, 1]` with recorded
  /// ops (1x1 convs, BN, sigmoid). The pullback keeps only `x` (plus the generator's small
  /// tape): it runs the ACON backward kernel, back-propagates dbeta through the generator's tape
  /// to the pooled tensor, and adds that gradient, divided by H W, to dx in one more pass. The
  /// unfused form (`spatialMean`, then `acon`) makes a broadcast `[N, C, H, W]` gradient and adds
  /// it, two more full passes.
  public static func metaAcon(
    _ x: Tensor, p1: Tensor, p2: Tensor, gate: ACONKernel.Gate = .sigmoid,
    generator: (Tensor) throws -> Tensor
  ) throws -> Tensor {
    guard x.rank == 4 || x.rank == 2 else {
      throw TensorError.shapeMismatch(
        operation: "meta_acon", shapes: [x.shape], detail: "expects x as [N, C, H, W] or [N, C]")
    }
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    let means = Tensor(uninitializedShape: [n, c, 1, 1])
    ACONKernel.planeMeans(x.data, planes: n * c, plane: plane, into: means.mutableData)
    // The generator's own tape starts at this leaf; its gradient is read back in the pullback.
    let pooled = Parameter(means)
    let recording = GradientMode.isEnabled
    let beta = try generator(recording ? pooled.value : pooled.value.detached)
    guard beta.shape == [n, c, 1, 1] else {
      throw TensorError.shapeMismatch(
        operation: "meta_acon", shapes: [x.shape, beta.shape],
        detail: "the generator must return beta as [N, C, 1, 1]")
    }
    let betaView = Tensor(
      shape: x.rank == 4 ? [n, c, 1, 1] : [n, c], storage: beta.storage, offset: beta.offset)
    let (geometry, layout) = try aconPlan("meta_acon", x, p1, p2, betaView)
    let out = Tensor(uninitializedShape: x.shape)
    ACONKernel.forward(
      x.data, out.mutableData, geometry: geometry, p1: p1.data, p2: p2.data, beta: beta.data,
      layout: layout, gate: gate)
    let (sx, s1, s2, sb) = (x.detached, p1.detached, p2.detached, beta.detached)
    let needsX = x.node != nil
    return record("meta_acon", output: out, inputs: [x, p1, p2, beta]) { g in
      let dx = Tensor(uninitializedShape: sx.shape)
      let sums = Tensor(uninitializedShape: [3 * n * c])
      ACONKernel.backward(
        sx.data, g.data, dx.mutableData, geometry: geometry, p1: s1.data, p2: s2.data,
        beta: sb.data, layout: layout, gate: gate, planeSums: sums.mutableData,
        dbetaElements: nil)
      let dp1 = Tensor(uninitializedShape: s1.shape)
      let dp2 = Tensor(uninitializedShape: s2.shape)
      let dbeta = Tensor(uninitializedShape: [n, c, 1, 1])
      ACONKernel.reduceParameterGradients(
        planeSums: sums.data, geometry: geometry, dp1: dp1.mutableData, dp2: dp2.mutableData,
        dbeta: dbeta.mutableData, dbetaCount: n * c, layout: layout)
      if beta.node != nil {
        // Through the generator (its parameters accumulate here) down to the pooled means.
        // The generator's tape is separate, so the outer backward finds it already spent.
        try? beta.backward(seed: dbeta)
        if needsX, let dpooled = pooled.grad {
          ACONKernel.addPlaneConstants(
            dx.mutableData, planes: n * c, plane: plane, values: dpooled.data,
            scale: 1 / Float(plane))
        }
      }
      return [dx, dp1, dp2, nil]
    }
  }
}

extension Tensor {
  /// meta-ACON with the pixel-wise generator, fused: `beta = sigmoid(weight_c x + bias_c)` and
  /// ACON-C with it, in one pass; the pullback recomputes beta from `x`, so only `x` is kept
  /// (see ``ACONKernel/pixelForward(_:_:geometry:p1:p2:weight:bias:gate:)``).
  ///
  /// - `x`: `[N, C, H, W]` or `[N, C]`; `p1`, `p2`, `weight`, `bias`: one value per channel.
  public static func pixelMetaAcon(
    _ x: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor,
    gate: ACONKernel.Gate = .sigmoid
  ) throws -> Tensor {
    let op = "meta_acon_pixel"
    let (geometry, _) = try aconPlan(op, x, p1, p2, weight)
    guard bias.count == geometry.channels else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, bias.shape], detail: "bias must hold one value per channel")
    }
    let out = Tensor(uninitializedShape: x.shape)
    ACONKernel.pixelForward(
      x.data, out.mutableData, geometry: geometry, p1: p1.data, p2: p2.data, weight: weight.data,
      bias: bias.data, gate: gate)
    let (sx, s1, s2, sw, sb) = (x.detached, p1.detached, p2.detached, weight.detached, bias.detached)
    return record(op, output: out, inputs: [x, p1, p2, weight, bias]) { g in
      let dx = Tensor(uninitializedShape: sx.shape)
      let sums = Tensor(uninitializedShape: [4 * geometry.batch * geometry.channels])
      ACONKernel.pixelBackward(
        sx.data, g.data, dx.mutableData, geometry: geometry, p1: s1.data, p2: s2.data,
        weight: sw.data, bias: sb.data, gate: gate, planeSums: sums.mutableData)
      let grads = [s1, s2, sw, sb].map { Tensor(uninitializedShape: $0.shape) }
      ACONKernel.reducePixelGradients(
        planeSums: sums.data, geometry: geometry, dp1: grads[0].mutableData,
        dp2: grads[1].mutableData, dweight: grads[2].mutableData, dbias: grads[3].mutableData)
      return [dx] + grads
    }
  }
}
