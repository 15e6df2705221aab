import ACONKernels

/// The differentiable ACON op: the fused kernels of the kernel layer behind `Tensor.record`.
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
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor, gate: ACONGate = .sigmoid
  ) throws -> Tensor {
    let op = gate == .sigmoid ? "acon" : "acon_hard"
    let (_, layout) = try aconPlan(op, x, p1, p2, beta)
    let backend = backend(op, x, p1, p2, beta)
    let out = x.empty(x.shape)
    backend.aconForward(x, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate, into: out)
    // Only x and the per-channel (or meta-ACON's per-sample) tensors stay alive for backward.
    let (sx, s1, s2, sb) = (x.detached, p1.detached, p2.detached, beta.detached)
    return record(op, output: out, inputs: [x, p1, p2, beta]) { g in
      let (dx, dp1, dp2, dbeta) = (
        g.empty(sx.shape), g.empty(s1.shape), g.empty(s2.shape), g.empty(sb.shape)
      )
      backend.aconBackward(
        sx, gradient: g, p1: s1, p2: s2, beta: sb, layout: layout, gate: gate, inputGradient: dx,
        p1Gradient: dp1, p2Gradient: dp2, betaGradient: dbeta)
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
      spatialOK =
        b.count == 4 && ((b[2] == 1 && b[3] == 1) || (b[2] == x.shape[2] && b[3] == x.shape[3]))
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
    let backend = backend("smooth_maximum", a, b)
    let out = a.empty(a.shape)
    backend.smoothMaximumForward(a, b, into: out)
    let (sa, sb) = (a.detached, b.detached)
    return record("smooth_maximum", output: out, inputs: [a, b]) { g in
      let (da, db) = (g.empty(sa.shape), g.empty(sa.shape))
      backend.smoothMaximumBackward(sa, sb, gradient: g, aGradient: da, bGradient: db)
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
    _ x: Tensor, p1: Tensor, p2: Tensor, gate: ACONGate = .sigmoid,
    generator: (Tensor) throws -> Tensor
  ) throws -> Tensor {
    guard x.rank == 4 || x.rank == 2 else {
      throw TensorError.shapeMismatch(
        operation: "meta_acon", shapes: [x.shape], detail: "expects x as [N, C, H, W] or [N, C]")
    }
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    let backend = backend("meta_acon", x, p1, p2)
    let means = x.empty([n, c, 1, 1])
    backend.planeMeans(x, centres: nil, planes: n * c, plane: plane, into: means)
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
    let (_, layout) = try aconPlan("meta_acon", x, p1, p2, betaView)
    let out = x.empty(x.shape)
    backend.aconForward(x, p1: p1, p2: p2, beta: betaView, layout: layout, gate: gate, into: out)
    let (sx, s1, s2, sb) = (x.detached, p1.detached, p2.detached, betaView.detached)
    let needsX = x.node != nil
    return record("meta_acon", output: out, inputs: [x, p1, p2, beta]) { g in
      let (dx, dp1, dp2) = (g.empty(sx.shape), g.empty(s1.shape), g.empty(s2.shape))
      let dbeta = g.empty(sb.shape)
      backend.aconBackward(
        sx, gradient: g, p1: s1, p2: s2, beta: sb, layout: layout, gate: gate, inputGradient: dx,
        p1Gradient: dp1, p2Gradient: dp2, betaGradient: dbeta)
      if beta.node != nil {
        // Through the generator (its parameters accumulate here) down to the pooled means.
        // The generator's tape is separate, so the outer backward finds it already spent.
        try beta.backward(seed: try dbeta.reshaped([n, c, 1, 1]))
        if needsX, let dpooled = pooled.grad {
          backend.addPlaneConstants(
            dpooled, scale: 1 / Float(plane), planes: n * c, plane: plane, to: dx)
        }
      }
      return [dx, dp1, dp2, nil]
    }
  }
}

extension Tensor {
  /// meta-ACON with the pixel-wise generator, fused: `beta = sigmoid(weight_c x + bias_c)` and
  /// ACON-C with it, in one pass; the pullback recomputes beta from `x`, so only `x` is kept
  /// (see `ACONKernel.pixelForward` in the kernel layer).
  ///
  /// - `x`: `[N, C, H, W]` or `[N, C]`; `p1`, `p2`, `weight`, `bias`: one value per channel.
  public static func pixelMetaAcon(
    _ x: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor,
    gate: ACONGate = .sigmoid
  ) throws -> Tensor {
    let op = "meta_acon_pixel"
    let (geometry, _) = try aconPlan(op, x, p1, p2, weight)
    let backend = backend(op, x, p1, p2, weight, bias)
    guard bias.count == geometry.channels else {
      throw TensorError.shapeMismatch(
        operation: op, shapes: [x.shape, bias.shape], detail: "bias must hold one value per channel"
      )
    }
    let out = x.empty(x.shape)
    backend.pixelAconForward(x, p1: p1, p2: p2, weight: weight, bias: bias, gate: gate, into: out)
    let (sx, s1, s2, sw, sb) = (
      x.detached, p1.detached, p2.detached, weight.detached, bias.detached
    )
    return record(op, output: out, inputs: [x, p1, p2, weight, bias]) { g in
      let dx = g.empty(sx.shape)
      let grads = [s1, s2, sw, sb].map { g.empty($0.shape) }
      backend.pixelAconBackward(
        sx, gradient: g, p1: s1, p2: s2, weight: sw, bias: sb, gate: gate, inputGradient: dx,
        p1Gradient: grads[0], p2Gradient: grads[1], weightGradient: grads[2],
        biasGradient: grads[3])
      return [dx] + grads
    }
  }
}

/// The switching gate `h` of ACON's smooth maximum `(p1 - p2) x h(beta (p1 - p2) x) + p2 x`.
public enum ACONGate: Sendable, Hashable {
  /// The logistic sigmoid, as in the paper.
  case sigmoid
  /// PyTorch's `F.hardsigmoid`: `clamp(z / 6 + 1/2, 0, 1)`; derivative 1/6 on (-3, 3), else 0.
  case hardSigmoid

  /// The same gate in the kernel layer's terms.
  var kernelGate: ACONKernel.Gate {
    switch self {
    case .sigmoid: .sigmoid
    case .hardSigmoid: .hardSigmoid
    }
  }
}
