/// Fused kernels for the ACON family (paper section 1; the scalar math is in ACONNN/ACON.swift).
///
/// ACON-C, with `d = p1 - p2`, `u = beta d x` and a gate `h` (the sigmoid, or a hard sigmoid):
///
///     y = d x h(u) + p2 x = x (d h(u) + p2)
///
/// Forward is one pass over `x` (read 4 bytes, write 4 bytes per element). Backward is one pass
/// that reads `x` and the upstream gradient `g` and writes `dx` (12 bytes per element), producing
/// per-plane partial sums for the parameter gradients on the way; it keeps only `x` from forward
/// and recomputes the gate:
///
///     t = h + u h'(u);  dx = g (d t + p2);  dp1 = sum g x t;  dp2 = sum g x - dp1;
///     dbeta = sum g (d x)^2 h'(u)
///
/// ACON-A (`p1 = 1, p2 = 0`), ACON-B (`p1 = 1, p2 = p`), Swish (also `beta = 1`) and meta-ACON
/// (beta per sample, per (sample, channel) or per element) are the same kernel.
/// Partial sums are kept per (n, c) plane and combined in a fixed order, so results do not
/// depend on the number of threads.
public enum ACONKernel {
  /// The switching gate `h` of the smooth maximum.
  public enum Gate: Sendable {
    /// The logistic sigmoid, as in the paper.
    case sigmoid
    /// PyTorch's `F.hardsigmoid`: `clamp(z / 6 + 1/2, 0, 1)`; derivative 1/6 on (-3, 3), else 0.
    case hardSigmoid
  }

  /// Where the switching factor lives: the element `(n, c, i)` of a `[N, C, plane]` input uses
  /// `beta[n * sampleStride + c * channelStride + i * elementStride]`; each stride is 0 where
  /// beta is broadcast (per channel: `(0, 1, 0)`; meta-ACON channel-wise: `(C, 1, 0)`;
  /// layer-wise: `(1, 0, 0)`; pixel-wise: `(C * plane, plane, 1)`).
  public struct BetaLayout: Sendable, Equatable {
    public var sampleStride: Int
    public var channelStride: Int
    public var elementStride: Int

    public init(sampleStride: Int, channelStride: Int, elementStride: Int) {
      self.sampleStride = sampleStride
      self.channelStride = channelStride
      self.elementStride = elementStride
    }

    /// One beta per channel.
    public static let perChannel = BetaLayout(sampleStride: 0, channelStride: 1, elementStride: 0)
  }

  /// Input geometry: `[batch, channels, plane]`, plane = H * W (1 after a linear layer).
  public struct Geometry: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var plane: Int

    public init(batch: Int, channels: Int, plane: Int) {
      self.batch = batch
      self.channels = channels
      self.plane = plane
    }

    public var count: Int { batch * channels * plane }
  }

  // MARK: Forward

  /// `y = d x h(beta d x) + p2 x` for `x` of geometry `geometry`; `p1`, `p2` hold one value per
  /// channel and `beta` is read through `layout`. `y` may be `x`.
  public static func forward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, geometry: Geometry,
    p1: UnsafePointer<Float>, p2: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    layout: BetaLayout, gate: Gate = .sigmoid
  ) {
    // One specialised copy of the loop per gate: the switch stays out of the hot loop.
    switch gate {
    case .sigmoid: forwardLoop(x, y, geometry, p1, p2, beta, layout, SigmoidGate.self)
    case .hardSigmoid: forwardLoop(x, y, geometry, p1, p2, beta, layout, HardSigmoidGate.self)
    }
  }

  /// One vector of the forward: `x (p2 + d h(beta d x))`.
  @_transparent
  static func forwardVector<G: GateFunction>(
    _ x: Float8, _ d: Float8, _ p2: Float8, _ beta: Float8, _: G.Type
  ) -> Float8 {
    x * p2.plusProduct(d, G.value(beta * d * x))
  }

  /// ``forwardVector(_:_:_:_:_:)`` for sixteen lanes.
  @_transparent
  static func forwardVector<G: GateFunction>(
    _ x: SIMD16<Float>, _ d: SIMD16<Float>, _ p2: SIMD16<Float>, _ beta: SIMD16<Float>,
    _: G.Type
  ) -> SIMD16<Float> {
    x * p2.plusProduct(d, G.value(beta * d * x))
  }

  // Each loop below holds exactly one copy of the vector body and handles the tail in the
  // same loop (`load8` with fewer lanes): with several copies the optimizer stops inlining the
  // sigmoid, and a SIMD8 crossing a call is passed as two halves, which costs more than the math.

  /// One plane with a broadcast beta and broadcast p1, p2 (`d`, `p2`, `beta`: one value in
  /// every lane), at ``WideFloat``'s width.
  ///
  /// `mayOverrun`: the plane's last, partial vector may read `x` and `y` up to a vector past
  /// the plane and write `y` there back unchanged (the caller owns those floats: the planes
  /// after this one in its run, ``partialVectorFits(plane:following:)``). Small planes (7x7,
  /// 14x14) then end in one more vector instead of a copy through a padded buffer and a call.
  @inline(never)
  static func forwardPlane<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
    _ d: Float8, _ p2: Float8, _ beta: Float8, _ mayOverrun: Bool, _: G.Type
  ) {
    let lanes = WideFloat.scalarCount
    let (dw, p2w, bw) = (
      WideFloat(repeating: d[0]), WideFloat(repeating: p2[0]), WideFloat(repeating: beta[0])
    )
    var i = 0
    // Two independent vectors per step: the sigmoid is a long dependency chain.
    while i &+ 2 &* lanes <= count {
      let a = forwardVector(loadWide(x + i), dw, p2w, bw, G.self)
      let b = forwardVector(loadWide(x + i + lanes), dw, p2w, bw, G.self)
      storeWide(a, y + i)
      storeWide(b, y + i + lanes)
      i = i &+ 2 &* lanes
    }
    // The rest, one vector at a time; with `mayOverrun` the last one is partial: its lanes past
    // the plane compute on zeros and store what was there. (The mask is chosen, not computed, in
    // the loop: computed there, LLVM split the masked load into pieces.)
    let end = mayOverrun ? count : count - count % lanes
    let (all, tail) = (WideLaneMask(repeating: -1), wideLaneMask(keepingFirst: count % lanes))
    while i < end {
      let keep = count &- i >= lanes ? all : tail
      let v = forwardVector(masked(loadWide(x + i), keep), dw, p2w, bw, G.self)
      storeWide(select(keep, v, loadWide(y + i)), y + i)
      i = i &+ lanes
    }
    if i < count {
      withWidePaddedTail(x + i, y + i, rest: count - i) {
        forwardPlane($0, $1, lanes, d, p2, beta, false, G.self)
      }
    }
  }

  /// p1, p2 and beta at element `i` for the strided layouts: broadcast when a stride is 0
  /// (one value for the whole run), else `lanes` consecutive values.
  @inline(__always)
  static func stridedParameters(
    _ i: Int, _ lanes: Int, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ p1Stride: Int, _ beta: UnsafePointer<Float>, _ betaStride: Int
  ) -> (Float8, Float8, Float8) {
    let a = p1Stride == 0 ? Float8(repeating: p1[0]) : load8(p1 + i, lanes: lanes)
    let b = p1Stride == 0 ? Float8(repeating: p2[0]) : load8(p2 + i, lanes: lanes)
    let bv = betaStride == 0 ? Float8(repeating: beta[0]) : load8(beta + i, lanes: lanes)
    return (a, b, bv)
  }

  /// One plane with beta per element, or one row of an `[N, C]` input (p1, p2, beta per lane;
  /// `betaStride` 0 broadcasts `beta[0]`).
  @inline(never)
  static func forwardStrided<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ p1Stride: Int,
    _ beta: UnsafePointer<Float>, _ betaStride: Int, _: G.Type
  ) {
    var i = 0
    while i < count {
      let lanes = min(8, count - i)
      let (a, b, bv) = stridedParameters(i, lanes, p1, p2, p1Stride, beta, betaStride)
      store8(forwardVector(load8(x + i, lanes: lanes), a - b, b, bv, G.self), y + i, lanes: lanes)
      i += 8
    }
  }

  static func forwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
    _ layout: BetaLayout, _ gate: G.Type
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    if plane == 1 {
      // [N, C]: vectorise along the channels of one row.
      Parallel.forRanges(geo.batch, minimumChunk: max(1, 16384 / max(channels, 1))) { rows in
        for n in rows {
          forwardStrided(
            x + n * channels, y + n * channels, channels, p1, p2, 1,
            beta + n * layout.sampleStride, layout.channelStride, G.self)
        }
      }
      return
    }
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 32768 / plane)) { planes in
      for q in planes {
        let c = q % channels
        let n = q / channels
        let bp = beta + n * layout.sampleStride + c * layout.channelStride
        if layout.elementStride == 0 {
          forwardPlane(
            x + q * plane, y + q * plane, plane, Float8(repeating: p1[c] - p2[c]),
            Float8(repeating: p2[c]), Float8(repeating: bp[0]),
            partialVectorFits(plane: plane, following: planes.upperBound - q - 1),
            G.self)
        } else {
          forwardStrided(x + q * plane, y + q * plane, plane, p1 + c, p2 + c, 0, bp, 1, G.self)
        }
      }
    }
  }

  // MARK: Backward

  /// The pullback of ``forward(_:_:geometry:p1:p2:beta:layout:gate:)`` from `x` alone.
  ///
  /// Writes `dx` (same geometry as `x`; may alias `g`), and `planeSums`, three floats per
  /// (n, c) plane: `sum g x t`, `sum g x`, `sum g (d x)^2 h'` (the last is left 0 when beta is
  /// per element: then `dbetaElements`, geometry of `x`, receives `g (d x)^2 h'` per element).
  /// ``reduceParameterGradients`` turns the plane sums into dp1, dp2 and dbeta.
  public static func backward(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    geometry: Geometry, p1: UnsafePointer<Float>, p2: UnsafePointer<Float>,
    beta: UnsafePointer<Float>, layout: BetaLayout, gate: Gate = .sigmoid,
    planeSums: UnsafeMutablePointer<Float>, dbetaElements: UnsafeMutablePointer<Float>?
  ) {
    switch gate {
    case .sigmoid:
      backwardLoop(
        x, g, dx, geometry, p1, p2, beta, layout, SigmoidGate.self, planeSums, dbetaElements)
    case .hardSigmoid:
      backwardLoop(
        x, g, dx, geometry, p1, p2, beta, layout, HardSigmoidGate.self, planeSums, dbetaElements)
    }
  }

  /// One vector of the backward: `(dx, g x t, g x, g (d x)^2 h')`.
  @_transparent
  static func backwardVector<G: GateFunction>(
    _ x: Float8, _ g: Float8, _ d: Float8, _ p2: Float8, _ beta: Float8, _: G.Type
  ) -> (Float8, Float8, Float8, Float8) {
    let dxv = d * x
    let u = beta * dxv
    let (h, slope) = G.valueAndSlope(u)
    let t = h.plusProduct(u, slope)
    let gx = g * x
    return (g * p2.plusProduct(d, t), gx * t, gx, (g * dxv) * (dxv * slope))
  }

  /// ``backwardVector(_:_:_:_:_:_:)``'s terms at ``WideFloat``'s width, for the loops that fuse
  /// the sums into their accumulators: `dz = g (p2 + d t)`, and `t`, the gate's slope and
  /// `d x`, from which they form `g x t`, `g x` and `g (d x)^2 h'` (`betaD` is `beta * d`).
  @_transparent
  static func backwardTerms<G: GateFunction>(
    _ x: WideFloat, _ g: WideFloat, _ d: WideFloat, _ p2: WideFloat, _ betaD: WideFloat,
    _: G.Type
  ) -> (dz: WideFloat, t: WideFloat, slope: WideFloat, dx: WideFloat) {
    let dxv = d * x
    let u = betaD * x
    let (h, slope) = G.valueAndSlope(u)
    let t = h.plusProduct(u, slope)
    return (g * p2.plusProduct(d, t), t, slope, dxv)
  }

  /// One plane with a broadcast beta (every parameter: one value in every lane), at
  /// ``WideFloat``'s width; returns the plane's three sums, and with `M` = ``NormalizedInput``
  /// (the ACON reads `z = x * scale + shift`, dx is then dz) two more for the batch norm's
  /// backward: `sum dz` and `sum dz (x - mean)`.
  @inline(never)
  static func backwardPlane<G: GateFunction, M: PlaneInput>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ count: Int, _ d8: Float8, _ p28: Float8, _ beta8: Float8, _ scale8: Float8,
    _ shift8: Float8, _ mean8: Float8, _ mayOverrun: Bool, _: G.Type, _: M.Type
  ) -> PlaneSums {
    let lanes = WideFloat.scalarCount
    let (d, p2, beta) = (
      WideFloat(repeating: d8[0]), WideFloat(repeating: p28[0]), WideFloat(repeating: beta8[0])
    )
    let (scale, shift, mean) = (
      WideFloat(repeating: scale8[0]), WideFloat(repeating: shift8[0]),
      WideFloat(repeating: mean8[0])
    )
    var acc1 = WideFloat(repeating: 0)
    var acc2 = WideFloat(repeating: 0)
    var acc3 = WideFloat(repeating: 0)
    var acc4 = WideFloat(repeating: 0)
    var acc5 = WideFloat(repeating: 0)
    let bd = beta * d
    var i = 0
    // After a batch norm (the fused layer), with `mayOverrun` (see forwardPlane): the last
    // vector is partial, its lanes past the plane read as zero (x, g and the centred x, so
    // that nothing of the planes after it, not even a NaN, reaches a sum) and write dz back
    // unchanged. The ACON alone keeps the plain loop: with the masks in it, its code (not the
    // fused one's) came out 2.5x slower.
    let overruns = M.normalizes && mayOverrun
    let end = overruns ? count : count - count % lanes
    let (all, tail) = (WideLaneMask(repeating: -1), wideLaneMask(keepingFirst: count % lanes))
    while i < end {
      // backwardVector with fused accumulations (one instruction per sum).
      let partial = M.normalizes && count &- i < lanes
      let keep = partial ? tail : all
      let xv = masked(M.read(x + i, scale, shift), keep)
      let gv = masked(loadWide(g + i), keep)
      let (dz, t, slope, dxv) = backwardTerms(xv, gv, d, p2, bd, G.self)
      storeWide(partial ? select(keep, dz, loadWide(dx + i)) : dz, dx + i)
      let gx = gv * xv
      acc1 = acc1.plusProduct(gx, t)
      acc2 += gx
      acc3 = acc3.plusProduct(gv * dxv, dxv * slope)
      if M.normalizes {
        acc4 += dz
        acc5 = acc5.plusProduct(dz, masked(loadWide(x + i) - mean, keep))
      }
      i = i &+ lanes
    }
    var sums = PlaneSums(
      gxt: horizontalSum(acc1), gx: horizontalSum(acc2), dbeta: horizontalSum(acc3),
      dz: horizontalSum(acc4), dzCentered: horizontalSum(acc5))
    if i < count {
      sums.add(
        withWidePaddedTail(x + i, g + i, dx + i, rest: count - i) {
          backwardPlane(
            $0, $1, $2, lanes, d8, p28, beta8, scale8, shift8, mean8, false, G.self, M.self)
        })
    }
    return sums
  }

  /// One plane with beta per element (its dbeta written to `dbeta`), or one row of an `[N, C]`
  /// input (p1, p2, beta per lane, `betaStride` 0 broadcasting; the sums written per lane).
  @inline(never)
  static func backwardStrided<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ count: Int, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ p1Stride: Int,
    _ beta: UnsafePointer<Float>, _ betaStride: Int, _ dbeta: UnsafeMutablePointer<Float>?,
    _ laneSums: UnsafeMutablePointer<Float>?, _: G.Type
  ) -> (Float, Float) {
    var acc1 = Float8(repeating: 0)
    var acc2 = Float8(repeating: 0)
    var i = 0
    while i < count {
      let lanes = min(8, count - i)
      let (a, b, bv) = stridedParameters(i, lanes, p1, p2, p1Stride, beta, betaStride)
      let (v, s1, s2, s3) = backwardVector(
        load8(x + i, lanes: lanes), load8(g + i, lanes: lanes), a - b, b, bv, G.self)
      store8(v, dx + i, lanes: lanes)
      if let dbeta { store8(s3, dbeta + i, lanes: lanes) }
      if let laneSums {
        for l in 0..<lanes {
          laneSums[3 * (i + l)] = s1[l]
          laneSums[3 * (i + l) + 1] = s2[l]
          laneSums[3 * (i + l) + 2] = s3[l]
        }
      }
      acc1 += s1
      acc2 += s2
      i += 8
    }
    return (horizontalSum(acc1), horizontalSum(acc2))
  }

  static func backwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ geo: Geometry, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _ gate: G.Type,
    _ sums: UnsafeMutablePointer<Float>, _ dbetaElements: UnsafeMutablePointer<Float>?
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    if plane == 1 {
      Parallel.forRanges(geo.batch, minimumChunk: max(1, 8192 / max(channels, 1))) { rows in
        for n in rows {
          let o = n * channels
          _ = backwardStrided(
            x + o, g + o, dx + o, channels, p1, p2, 1, beta + n * layout.sampleStride,
            layout.channelStride, nil, sums + 3 * o, G.self)
        }
      }
      return
    }
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        let c = q % channels
        let n = q / channels
        let o = q * plane
        let bp = beta + n * layout.sampleStride + c * layout.channelStride
        if layout.elementStride == 0 {
          let s = backwardPlane(
            x + o, g + o, dx + o, plane, Float8(repeating: p1[c] - p2[c]),
            Float8(repeating: p2[c]), Float8(repeating: bp[0]), .one, .zero, .zero, false,
            G.self, RawInput.self)
          sums[3 * q] = s.gxt
          sums[3 * q + 1] = s.gx
          sums[3 * q + 2] = s.dbeta
        } else {
          let (s1, s2) = backwardStrided(
            x + o, g + o, dx + o, plane, p1 + c, p2 + c, 0, bp, 1, dbetaElements! + o, nil,
            G.self)
          sums[3 * q] = s1
          sums[3 * q + 1] = s2
          sums[3 * q + 2] = 0
        }
      }
    }
  }

  /// Combines the plane sums of ``backward`` in a fixed order (n outer, c inner) into
  /// `dp1`, `dp2` (one per channel) and, unless beta is per element, `dbeta` laid out as
  /// `layout` reads beta (`dbetaCount` floats, zeroed here first). Accumulates in Float64.
  public static func reduceParameterGradients(
    planeSums sums: UnsafePointer<Float>, geometry: Geometry,
    dp1: UnsafeMutablePointer<Float>, dp2: UnsafeMutablePointer<Float>,
    dbeta: UnsafeMutablePointer<Float>?, dbetaCount: Int, layout: BetaLayout
  ) {
    let channels = geometry.channels
    var a1 = [Double](repeating: 0, count: channels)
    var a2 = [Double](repeating: 0, count: channels)
    var ab = [Double](repeating: 0, count: dbeta == nil ? 0 : dbetaCount)
    for n in 0..<geometry.batch {
      for c in 0..<channels {
        let k = 3 * (n * channels + c)
        let s1 = Double(sums[k])
        a1[c] += s1
        a2[c] += Double(sums[k + 1]) - s1
        if dbeta != nil {
          ab[n * layout.sampleStride + c * layout.channelStride] += Double(sums[k + 2])
        }
      }
    }
    for c in 0..<channels {
      dp1[c] = Float(a1[c])
      dp2[c] = Float(a2[c])
    }
    if let dbeta {
      for i in 0..<dbetaCount { dbeta[i] = Float(ab[i]) }
    }
  }

  // MARK: Smooth maximum of two tensors (ACON-FReLU)

  /// `y = (a - b) h(a - b) + b` elementwise with the sigmoid gate (beta fixed at 1, as in TFNet).
  public static func smoothMaximumForward(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    ElementwiseKernel.zip(a, b, y, count: count) { a, b in
      let e = a - b
      return b.plusProduct(e, fastSigmoid(e))
    }
  }

  /// Pullback of ``smoothMaximumForward``: `da = g swish'(a - b)`, `db = g - da`.
  public static func smoothMaximumBackward(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
    da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>, count: Int
  ) {
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let o = range.lowerBound
      forEachVector(range.count) { i, lanes in
        let e = load8(a + o + i, lanes: lanes) - load8(b + o + i, lanes: lanes)
        let gv = load8(g + o + i, lanes: lanes)
        let s = fastSigmoid(e)
        let t = s.plusProduct(e, s - s * s)
        let dav = gv * t
        store8(dav, da + o + i, lanes: lanes)
        store8(gv - dav, db + o + i, lanes: lanes)
      }
    }
  }
}

/// The partial sums of one plane's backward (see ``ACONKernel/backward(_:_:_:geometry:p1:p2:beta:layout:gate:planeSums:dbetaElements:)``).
struct PlaneSums {
  /// `sum g x t`, `sum g x`, `sum g (d x)^2 h'`.
  var gxt: Float, gx: Float, dbeta: Float
  /// Only after a fused batch norm: `sum dz`, `sum dz (x - mean)`.
  var dz: Float, dzCentered: Float

  mutating func add(_ o: PlaneSums) {
    (gxt, gx, dbeta, dz, dzCentered) = (
      gxt + o.gxt, gx + o.gx, dbeta + o.dbeta, dz + o.dz, dzCentered + o.dzCentered
    )
  }
}

/// How a plane kernel reads its input, as a type so that each loop is specialised for it.
@usableFromInline
protocol PlaneInput {
  /// Whether the input goes through a batch norm's affine map first.
  static var normalizes: Bool { get }
  /// Eight input values as the ACON sees them.
  static func read(_ p: UnsafePointer<Float>, _ scale: Float8, _ shift: Float8) -> Float8
  /// Sixteen.
  static func read(
    _ p: UnsafePointer<Float>, _ scale: SIMD16<Float>, _ shift: SIMD16<Float>
  ) -> SIMD16<Float>
}

/// The ACON's own input.
@usableFromInline
enum RawInput: PlaneInput {
  @usableFromInline static var normalizes: Bool { false }
  @_transparent @usableFromInline
  static func read(_ p: UnsafePointer<Float>, _: Float8, _: Float8) -> Float8 { load8(p) }
  @_transparent @usableFromInline
  static func read(
    _ p: UnsafePointer<Float>, _: SIMD16<Float>, _: SIMD16<Float>
  ) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
  }
}

/// A batch norm's input, normalised on the fly as `x * scale + shift` with the same fused
/// multiply-add as ``BatchNormKernel/normalize(_:_:batch:channels:plane:mean:invStd:weight:bias:relu:)``,
/// so the fused and the separate layers see identical values.
@usableFromInline
enum NormalizedInput: PlaneInput {
  @usableFromInline static var normalizes: Bool { true }
  @_transparent @usableFromInline
  static func read(_ p: UnsafePointer<Float>, _ scale: Float8, _ shift: Float8) -> Float8 {
    shift.plusProduct(load8(p), scale)
  }
  @_transparent @usableFromInline
  static func read(
    _ p: UnsafePointer<Float>, _ scale: SIMD16<Float>, _ shift: SIMD16<Float>
  ) -> SIMD16<Float> {
    shift.plusProduct(UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self), scale)
  }
}

/// A gate `h` of the smooth maximum, as a type so that each kernel loop is specialised for it.
@usableFromInline
protocol GateFunction {
  /// `h(u)`.
  static func value(_ u: Float8) -> Float8
  /// `(h(u), h'(u))`.
  static func valueAndSlope(_ u: Float8) -> (Float8, Float8)
  /// The same two for sixteen lanes (the wide plane loops, ``WideFloat``).
  static func value(_ u: SIMD16<Float>) -> SIMD16<Float>
  static func valueAndSlope(_ u: SIMD16<Float>) -> (SIMD16<Float>, SIMD16<Float>)
}

/// The logistic sigmoid: `h' = h (1 - h)`.
@usableFromInline
enum SigmoidGate: GateFunction {
  @_transparent @usableFromInline
  static func value(_ u: Float8) -> Float8 { fastSigmoid(u) }

  @_transparent @usableFromInline
  static func valueAndSlope(_ u: Float8) -> (Float8, Float8) {
    let s = fastSigmoid(u)
    return (s, s - s * s)
  }

  @_transparent @usableFromInline
  static func value(_ u: SIMD16<Float>) -> SIMD16<Float> { fastSigmoid(u) }

  @_transparent @usableFromInline
  static func valueAndSlope(_ u: SIMD16<Float>) -> (SIMD16<Float>, SIMD16<Float>) {
    let s = fastSigmoid(u)
    return (s, s - s * s)
  }
}

/// PyTorch's hard sigmoid `clamp(u / 6 + 1/2, 0, 1)`; its backward passes 1/6 on (-3, 3).
@usableFromInline
enum HardSigmoidGate: GateFunction {
  @_transparent @usableFromInline
  static func value(_ u: Float8) -> Float8 {
    let z = u * Float8(repeating: 1.0 / 6.0) + Float8(repeating: 0.5)
    let low = z.replacing(with: 0, where: z .< 0)
    return low.replacing(with: 1, where: low .> 1)
  }

  @_transparent @usableFromInline
  static func valueAndSlope(_ u: Float8) -> (Float8, Float8) {
    let inside = (u .> Float8(repeating: -3)) .& (u .< Float8(repeating: 3))
    return (value(u), Float8(repeating: 0).replacing(with: 1.0 / 6.0, where: inside))
  }

  @_transparent @usableFromInline
  static func value(_ u: SIMD16<Float>) -> SIMD16<Float> {
    typealias V = SIMD16<Float>
    let z = u * V(repeating: 1.0 / 6.0) + V(repeating: 0.5)
    let low = z.replacing(with: 0, where: z .< 0)
    return low.replacing(with: 1, where: low .> 1)
  }

  @_transparent @usableFromInline
  static func valueAndSlope(_ u: SIMD16<Float>) -> (SIMD16<Float>, SIMD16<Float>) {
    typealias V = SIMD16<Float>
    let inside = (u .> V(repeating: -3)) .& (u .< V(repeating: 3))
    return (value(u), V(repeating: 0).replacing(with: 1.0 / 6.0, where: inside))
  }
}

extension ACONKernel {
  /// `y[q * plane + i] += values[q] * scale` for every plane `q`: adds the gradient of a
  /// spatial mean (meta-ACON's pooled input) into `dx` in one pass.
  public static func addPlaneConstants(
    _ y: UnsafeMutablePointer<Float>, planes: Int, plane: Int, values: UnsafePointer<Float>,
    scale: Float
  ) {
    Parallel.forRanges(planes, minimumChunk: max(1, 32768 / max(plane, 1))) { range in
      for q in range {
        let v = Float8(repeating: values[q] * scale)
        let p = y + q * plane
        var i = 0
        while i + 8 <= plane {
          store8(load8(p + i) + v, p + i)
          i += 8
        }
        while i < plane {
          p[i] += v[0]
          i += 1
        }
      }
    }
  }

  /// Per-plane means of `x` (`planes` planes of `plane` floats), in one pass. With `centres`
  /// (one value per channel, plane `q` being of channel `q % channels`), the means of
  /// `x - centres[channel]`: subtracting before summing keeps the sums accurate when `x` is far
  /// from zero against its spread.
  public static func planeMeans(
    _ x: UnsafePointer<Float>, planes: Int, plane: Int, into means: UnsafeMutablePointer<Float>,
    centres: UnsafePointer<Float>? = nil, channels: Int = 1
  ) {
    let inverse = 1 / Float(max(plane, 1))
    Parallel.forRanges(planes, minimumChunk: max(1, 32768 / max(plane, 1))) { range in
      for q in range {
        let p = x + q * plane
        let centre = centres?[q % channels] ?? 0
        // Four wide accumulators: besides the adds' latency, the short partial sums keep the
        // mean accurate (meta-ACON's generator magnifies the differences between samples'
        // means, which are small against the means on uncentred input).
        let lanes = WideFloat.scalarCount
        let m = WideFloat(repeating: centre)
        var (a, b) = (WideFloat(repeating: 0), WideFloat(repeating: 0))
        var (c, d) = (WideFloat(repeating: 0), WideFloat(repeating: 0))
        var i = 0
        while i + 4 * lanes <= plane {
          a += loadWide(p + i) - m
          b += loadWide(p + i + lanes) - m
          c += loadWide(p + i + 2 * lanes) - m
          d += loadWide(p + i + 3 * lanes) - m
          i += 4 * lanes
        }
        while i + lanes <= plane {
          a += loadWide(p + i) - m
          i += lanes
        }
        var total = horizontalSum((a + b) + (c + d))
        while i < plane {
          total += p[i] - centre
          i += 1
        }
        means[q] = total * inverse
      }
    }
  }
}
