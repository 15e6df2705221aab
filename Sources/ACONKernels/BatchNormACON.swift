/// A batch norm and the ACON after it as one layer (the pair every ShuffleNetV2, ResNet and
/// MobileNet block has): `y = acon(z)`, `z = x * scale + shift` per channel, where
/// `scale = weight / std` and `shift = bias - mean * scale`.
///
/// Bytes per element, against the two layers run one after the other:
/// - forward: batch statistics (2 reads of `x`) and one pass that normalises and activates
///   (read 4, write 4): 16 instead of 24, and `z` is neither written nor kept;
/// - backward: one pass that recomputes `z`, writes `dz` and gathers the ACON's and the batch
///   norm's sums (12), and one that turns `dz` into `dx` in place (12): 24 instead of 32.
/// meta-ACON's pooled means come for free from the statistics pass (the mean of `z` over a
/// plane is the affine map of the mean of `x`), and the gradient of those means is a constant
/// per plane that the `dx` pass adds at no cost: the pair costs what BN + ACON-C costs.
extension ACONKernel {
  /// `y = acon(x * scale + shift)`; beta per channel or per (sample, channel) (`layout` with
  /// `elementStride` 0). `x` is `[N, C, plane]`; `y` may be `x`.
  public static func forwardAfterBatchNorm(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, geometry: Geometry,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, p1: UnsafePointer<Float>,
    p2: UnsafePointer<Float>, beta: UnsafePointer<Float>, layout: BetaLayout, gate: Gate = .sigmoid
  ) {
    precondition(layout.elementStride == 0, "the fused batch norm + ACON takes beta per plane")
    switch gate {
    case .sigmoid:
      normalizedForwardLoop(x, y, geometry, scale, shift, p1, p2, beta, layout, SigmoidGate.self)
    case .hardSigmoid:
      normalizedForwardLoop(
        x, y, geometry, scale, shift, p1, p2, beta, layout, HardSigmoidGate.self)
    }
  }

  static func normalizedForwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>, _ p1: UnsafePointer<Float>,
    _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _: G.Type
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 32768 / plane)) { planes in
      var planes = planes
      if plane <= WideFloat.scalarCount {
        planes = normalizedForwardSmallPlanes(
          x, y, geo, planes, scale, shift, p1, p2, beta, layout, G.self)
      }
      for q in planes {
        let (n, c) = q.quotientAndRemainder(dividingBy: channels)
        let b = beta[n * layout.sampleStride + c * layout.channelStride]
        // Normalise the plane into y, then activate it in place while it is still in L1/L2:
        // x is read once and y written once from memory's point of view. (Normalising inside
        // the ACON loop instead makes the optimizer split the sigmoid into scalar code.) Both
        // loops end a plane on a partial vector when the planes after it are this run's.
        let (xp, yp) = (x + q * plane, y + q * plane)
        let mayOverrun = partialVectorFits(plane: plane, following: planes.upperBound - q - 1)
        let (sv, hv) = (WideFloat(repeating: scale[c]), WideFloat(repeating: shift[c]))
        writePlane(yp, count: plane, mayOverrun: mayOverrun) {
          hv.addingProduct(loadWide(xp + $0), sv)
        } scalar: {
          hv[0].addingProduct(xp[$0], sv[0])
        }
        forwardPlane(
          yp, yp, plane, Float8(repeating: p1[c] - p2[c]), Float8(repeating: p2[c]),
          Float8(repeating: b), mayOverrun, G.self)
      }
    }
  }

  /// Planes of at most one vector (4x4 and smaller: the last stages of small-image networks)
  /// as one loop over the run instead of a call per plane: each plane is a single pass through
  /// the sigmoid's long chain of dependent operations, which only overlaps with the next plane's
  /// when both are in the same loop. Returns the planes left to the plane loop: the last ones,
  /// whose partial vector would run past the run.
  @inline(never)
  static func normalizedForwardSmallPlanes<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ planes: Range<Int>, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
    _ layout: BetaLayout, _: G.Type
  ) -> Range<Int> {
    let (channels, plane) = (geo.channels, geo.plane)
    let keep = wideLaneMask(keepingFirst: plane)
    var q = planes.lowerBound
    var (n, c) = q.quotientAndRemainder(dividingBy: channels)
    while q < planes.upperBound
      && partialVectorFits(plane: plane, following: planes.upperBound - q - 1)
    {
      let o = q * plane
      let z = masked(
        WideFloat(repeating: shift[c]).addingProduct(
          loadWide(x + o), WideFloat(repeating: scale[c])),
        keep)
      let v = forwardVector(
        z, WideFloat(repeating: p1[c] - p2[c]), WideFloat(repeating: p2[c]),
        WideFloat(repeating: beta[n * layout.sampleStride + c * layout.channelStride]), G.self)
      storeWide(v, y + o, keeping: keep)
      q += 1
      c += 1
      if c == channels { (n, c) = (n + 1, 0) }
    }
    return q..<planes.upperBound
  }

  /// The ACON half of the fused pullback: from `x` and the upstream gradient `g`, writes
  /// `dz = dL/dz` (may alias `g`), the ACON's three sums per plane into `planeSums` (as
  /// ``backward(_:_:_:geometry:p1:p2:beta:layout:gate:planeSums:dbetaElements:)``) and the batch
  /// norm's two into `normSums`: `sum dz` and `sum dz (x - mean[c])` per plane.
  public static func backwardAfterBatchNorm(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, dz: UnsafeMutablePointer<Float>,
    geometry: Geometry, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, p1: UnsafePointer<Float>, p2: UnsafePointer<Float>,
    beta: UnsafePointer<Float>, layout: BetaLayout, gate: Gate = .sigmoid,
    planeSums: UnsafeMutablePointer<Float>, normSums: UnsafeMutablePointer<Float>
  ) {
    precondition(layout.elementStride == 0, "the fused batch norm + ACON takes beta per plane")
    switch gate {
    case .sigmoid:
      normalizedBackwardLoop(
        x, g, dz, geometry, scale, shift, mean, p1, p2, beta, layout, SigmoidGate.self,
        planeSums, normSums)
    case .hardSigmoid:
      normalizedBackwardLoop(
        x, g, dz, geometry, scale, shift, mean, p1, p2, beta, layout, HardSigmoidGate.self,
        planeSums, normSums)
    }
  }

  static func normalizedBackwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dz: UnsafeMutablePointer<Float>,
    _ geo: Geometry, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
    _ mean: UnsafePointer<Float>, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _: G.Type,
    _ sums: UnsafeMutablePointer<Float>, _ normSums: UnsafeMutablePointer<Float>
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        let (n, c) = q.quotientAndRemainder(dividingBy: channels)
        let o = q * plane
        let b = beta[n * layout.sampleStride + c * layout.channelStride]
        let s = backwardPlane(
          x + o, g + o, dz + o, plane, Float8(repeating: p1[c] - p2[c]),
          Float8(repeating: p2[c]), Float8(repeating: b), Float8(repeating: scale[c]),
          Float8(repeating: shift[c]), Float8(repeating: mean[c]),
          partialVectorFits(plane: plane, following: planes.upperBound - q - 1),
          G.self, NormalizedInput.self)
        (sums[3 * q], sums[3 * q + 1], sums[3 * q + 2]) = (s.gxt, s.gx, s.dbeta)
        (normSums[2 * q], normSums[2 * q + 1]) = (s.dz, s.dzCentered)
      }
    }
  }
}

extension BatchNormKernel {
  /// The batch norm half of the fused pullback, in place: `dx = (dz + constant[n, c]) * k[c]
  /// + (x - mean[c]) * q[c] + r[c]` per plane (`constant` nil for 0), where `k`, `q`, `r` come
  /// from the batch norm's sums (training) or are `weight / std`, 0, 0 (evaluation). `x` is
  /// centred before the product so that no two terms of the input's magnitude cancel.
  public static func applyGradient(
    _ x: UnsafePointer<Float>, _ dz: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    batch n: Int, channels c: Int, plane: Int, mean: UnsafePointer<Float>,
    k: UnsafePointer<Float>, q: UnsafePointer<Float>, r: UnsafePointer<Float>,
    planeConstants: UnsafePointer<Float>?
  ) {
    Parallel.forRanges(n * c, minimumChunk: max(1, 32768 / plane)) { planes in
      for p in planes {
        let ch = p % c
        let kv = WideFloat(repeating: k[ch])
        let qv = WideFloat(repeating: q[ch])
        let mv = WideFloat(repeating: mean[ch])
        let rv = WideFloat(repeating: r[ch] + (planeConstants?[p] ?? 0) * k[ch])
        let (xr, gr, dr) = (x + p * plane, dz + p * plane, dx + p * plane)
        let mayOverrun = partialVectorFits(plane: plane, following: planes.upperBound - p - 1)
        writePlane(dr, count: plane, mayOverrun: mayOverrun) {
          rv.addingProduct(loadWide(xr + $0) - mv, qv).addingProduct(loadWide(gr + $0), kv)
        } scalar: {
          rv[0].addingProduct(xr[$0] - mv[0], qv[0]).addingProduct(gr[$0], kv[0])
        }
      }
    }
  }
}

extension BatchNormKernel {
  /// The per-channel `scale` and `shift` of the affine map batch norm applies (`z = x * scale +
  /// shift`), computed exactly as ``normalize(_:_:batch:channels:plane:mean:invStd:weight:bias:relu:)``
  /// computes them, so fused layers see the same `z`.
  public static func affineCoefficients(
    channels c: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    scale: UnsafeMutablePointer<Float>, shift: UnsafeMutablePointer<Float>
  ) {
    for ch in 0..<c {
      (scale[ch], shift[ch]) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
    }
  }
}
