/// meta-ACON with the pixel-wise generator as one kernel, `beta = sigmoid(w_c x + b_c)`
/// recomputed from `x` instead of kept: forward and backward are one pass each, and only `x`
/// stays alive for backward (the separate ops keep `x` and the x-sized beta, 2x the input).
///
/// With `s = sigmoid(w x + b)`, `d = p1 - p2`, `u = s d x` and the switch gate `h`:
///
///     y = x (d h(u) + p2)
///     t = h + u h'(u)                  (dy/dx at fixed beta is d t + p2)
///     e = g (d x)^2 h'(u) s (1 - s)    (the gradient at w x + b)
///     dx = g (d t + p2) + e w;  dp1 = sum g x t;  dp2 = sum g x - dp1;  dw = sum e x;  db = sum e
extension ACONKernel {
  /// Forward over `[N, C, plane]`; `weight`, `bias` (the generator), `p1`, `p2` per channel.
  public static func pixelForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, geometry: Geometry,
    p1: UnsafePointer<Float>, p2: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, gate: Gate = .sigmoid
  ) {
    switch gate {
    case .sigmoid: pixelForwardLoop(x, y, geometry, p1, p2, weight, bias, SigmoidGate.self)
    case .hardSigmoid: pixelForwardLoop(x, y, geometry, p1, p2, weight, bias, HardSigmoidGate.self)
    }
  }

  /// Backward: writes `dx` (may alias `g`) and four sums per (n, c) plane into `planeSums`:
  /// `sum g x t`, `sum g x`, `sum e x`, `sum e`.
  public static func pixelBackward(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    geometry: Geometry, p1: UnsafePointer<Float>, p2: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, gate: Gate = .sigmoid,
    planeSums: UnsafeMutablePointer<Float>
  ) {
    switch gate {
    case .sigmoid:
      pixelBackwardLoop(x, g, dx, geometry, p1, p2, weight, bias, SigmoidGate.self, planeSums)
    case .hardSigmoid:
      pixelBackwardLoop(x, g, dx, geometry, p1, p2, weight, bias, HardSigmoidGate.self, planeSums)
    }
  }

  /// Per-channel dp1, dp2, dweight, dbias from ``pixelBackward``'s plane sums, in a fixed
  /// order (n outer) in Float64.
  public static func reducePixelGradients(
    planeSums sums: UnsafePointer<Float>, geometry: Geometry, dp1: UnsafeMutablePointer<Float>,
    dp2: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
    dbias: UnsafeMutablePointer<Float>
  ) {
    let c = geometry.channels
    for ch in 0..<c {
      var a = (0.0, 0.0, 0.0, 0.0)
      for n in 0..<geometry.batch {
        let k = 4 * (n * c + ch)
        a = (
          a.0 + Double(sums[k]), a.1 + Double(sums[k + 1]), a.2 + Double(sums[k + 2]),
          a.3 + Double(sums[k + 3])
        )
      }
      (dp1[ch], dp2[ch], dweight[ch], dbias[ch]) = (
        Float(a.0), Float(a.1 - a.0), Float(a.2), Float(a.3)
      )
    }
  }

  static func pixelForwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
    _ b: UnsafePointer<Float>, _: G.Type
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        let c = q % channels
        pixelForwardPlane(
          x + q * plane, y + q * plane, plane, Float8(repeating: p1[c] - p2[c]),
          Float8(repeating: p2[c]), Float8(repeating: w[c]), Float8(repeating: b[c]), G.self)
      }
    }
  }

  /// One plane; a single copy of the vector body (see `forwardPlane`), the tail on a padded copy.
  @inline(never)
  static func pixelForwardPlane<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ d: Float8,
    _ p2: Float8, _ w: Float8, _ b: Float8, _: G.Type
  ) {
    var i = 0
    while i &+ 8 <= count {
      let xv = load8(x + i)
      let beta = fastSigmoid(b.plusProduct(xv, w))
      store8(forwardVector(xv, d, p2, beta, G.self), y + i)
      i = i &+ 8
    }
    if i < count {
      withPaddedTail(x + i, y + i, rest: count - i) {
        pixelForwardPlane($0, $1, 8, d, p2, w, b, G.self)
      }
    }
  }

  static func pixelBackwardLoop<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ geo: Geometry, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _: G.Type,
    _ sums: UnsafeMutablePointer<Float>
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        let c = q % channels
        let s = pixelBackwardPlane(
          x + q * plane, g + q * plane, dx + q * plane, plane, Float8(repeating: p1[c] - p2[c]),
          Float8(repeating: p2[c]), Float8(repeating: w[c]), Float8(repeating: b[c]), G.self)
        (sums[4 * q], sums[4 * q + 1], sums[4 * q + 2], sums[4 * q + 3]) = s
      }
    }
  }

  @inline(never)
  static func pixelBackwardPlane<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ count: Int, _ d: Float8, _ p2: Float8, _ w: Float8, _ b: Float8, _: G.Type
  ) -> (Float, Float, Float, Float) {
    var (a1, a2, a3, a4) = (
      Float8(repeating: 0), Float8(repeating: 0), Float8(repeating: 0), Float8(repeating: 0)
    )
    let one = Float8(repeating: 1)
    var i = 0
    while i &+ 8 <= count {
      let xv = load8(x + i)
      let gv = load8(g + i)
      let s = fastSigmoid(b.plusProduct(xv, w))
      let dxv = d * xv
      let u = s * dxv
      let (h, slope) = G.valueAndSlope(u)
      let t = h.plusProduct(u, slope)
      let e = (gv * dxv) * (dxv * slope) * (s * (one - s))
      store8((gv * p2.plusProduct(d, t)).plusProduct(e, w), dx + i)
      let gx = gv * xv
      a1 = a1.plusProduct(gx, t)
      a2 += gx
      a3 = a3.plusProduct(e, xv)
      a4 += e
      i = i &+ 8
    }
    var sums = (horizontalSum(a1), horizontalSum(a2), horizontalSum(a3), horizontalSum(a4))
    if i < count {
      let tail = withPaddedTail(x + i, g + i, dx + i, rest: count - i) {
        pixelBackwardPlane($0, $1, $2, 8, d, p2, w, b, G.self)
      }
      sums = (sums.0 + tail.0, sums.1 + tail.1, sums.2 + tail.2, sums.3 + tail.3)
    }
    return sums
  }
}
