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
public enum ACONKernels {
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

  // MARK: Gates

  /// `h(u)`.
  @inlinable @inline(__always)
  static func gateValue(_ u: Float8, _ gate: Gate) -> Float8 {
    switch gate {
    case .sigmoid:
      return fastSigmoid(u)
    case .hardSigmoid:
      let z = u * Float8(repeating: 1.0 / 6.0)
        + Float8(repeating: 0.5)
      let low = z.replacing(with: 0, where: z .< 0)
      return low.replacing(with: 1, where: low .> 1)
    }
  }

  /// `(h(u), h'(u))`.
  @inlinable @inline(__always)
  static func gateValueAndSlope(_ u: Float8, _ gate: Gate) -> (Float8, Float8) {
    switch gate {
    case .sigmoid:
      let s = fastSigmoid(u)
      return (s, s - s * s)
    case .hardSigmoid:
      let h = gateValue(u, gate)
      let inside = (u .> Float8(repeating: -3)) .& (u .< Float8(repeating: 3))
      let slope = Float8(repeating: 0).replacing(with: 1.0 / 6.0, where: inside)
      return (h, slope)
    }
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
    case .sigmoid: forwardLoop(x, y, geometry, p1, p2, beta, layout, .sigmoid)
    case .hardSigmoid: forwardLoop(x, y, geometry, p1, p2, beta, layout, .hardSigmoid)
    }
  }

  @inline(__always)
  static func forwardLoop(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
    _ layout: BetaLayout, _ gate: Gate
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    if plane == 1 {
      // [N, C]: vectorise along the channels of one row.
      Parallel.forRanges(geo.batch, minimumChunk: max(1, 16384 / max(channels, 1))) { rows in
        for n in rows {
          let xr = x + n * channels
          let yr = y + n * channels
          let br = beta + n * layout.sampleStride
          let bs = layout.channelStride
          forEachVector(channels) { c, lanes in
            let xv = load8(xr + c, lanes: lanes)
            let a = load8(p1 + c, lanes: lanes)
            let b = load8(p2 + c, lanes: lanes)
            let bv = bs == 0 ? Float8(repeating: br[0]) : load8(br + c * bs, lanes: lanes)
            let d = a - b
            let h = gateValue(bv * d * xv, gate)
            store8(xv * b.addingProduct(d, h), yr + c, lanes: lanes)
          }
        }
      }
      return
    }
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 32768 / plane)) { planes in
      for q in planes {
        let c = q % channels
        let n = q / channels
        let xp = x + q * plane
        let yp = y + q * plane
        let d = Float8(repeating: p1[c] - p2[c])
        let b = Float8(repeating: p2[c])
        let bp = beta + n * layout.sampleStride + c * layout.channelStride
        if layout.elementStride == 0 {
          let bd = Float8(repeating: bp[0]) * d
          forEachVector(plane) { i, lanes in
            let xv = load8(xp + i, lanes: lanes)
            let h = gateValue(bd * xv, gate)
            store8(xv * b.addingProduct(d, h), yp + i, lanes: lanes)
          }
        } else {
          forEachVector(plane) { i, lanes in
            let xv = load8(xp + i, lanes: lanes)
            let h = gateValue(load8(bp + i, lanes: lanes) * d * xv, gate)
            store8(xv * b.addingProduct(d, h), yp + i, lanes: lanes)
          }
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
      backwardLoop(x, g, dx, geometry, p1, p2, beta, layout, .sigmoid, planeSums, dbetaElements)
    case .hardSigmoid:
      backwardLoop(
        x, g, dx, geometry, p1, p2, beta, layout, .hardSigmoid, planeSums, dbetaElements)
    }
  }

  @inline(__always)
  static func backwardLoop(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    _ geo: Geometry, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _ gate: Gate,
    _ sums: UnsafeMutablePointer<Float>, _ dbetaElements: UnsafeMutablePointer<Float>?
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    let zero = Float8(repeating: 0)
    if plane == 1 {
      Parallel.forRanges(geo.batch, minimumChunk: max(1, 8192 / max(channels, 1))) { rows in
        for n in rows {
          let o = n * channels
          let br = beta + n * layout.sampleStride
          let bs = layout.channelStride
          forEachVector(channels) { c, lanes in
            let xv = load8(x + o + c, lanes: lanes)
            let gv = load8(g + o + c, lanes: lanes)
            let a = load8(p1 + c, lanes: lanes)
            let b = load8(p2 + c, lanes: lanes)
            let bv = bs == 0 ? Float8(repeating: br[0]) : load8(br + c * bs, lanes: lanes)
            let d = a - b
            let dxv = d * xv
            let u = bv * dxv
            let (h, slope) = gateValueAndSlope(u, gate)
            let t = h.addingProduct(u, slope)
            store8(gv * b.addingProduct(d, t), dx + o + c, lanes: lanes)
            let gx = gv * xv
            let s1 = gx * t
            let s3 = gv * dxv * dxv * slope
            for l in 0..<lanes {
              let k = 3 * (o + c + l)
              sums[k] = s1[l]
              sums[k + 1] = gx[l]
              sums[k + 2] = s3[l]
            }
          }
        }
      }
      return
    }
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        let c = q % channels
        let n = q / channels
        let xp = x + q * plane
        let gp = g + q * plane
        let dp = dx + q * plane
        let d = Float8(repeating: p1[c] - p2[c])
        let b = Float8(repeating: p2[c])
        let bp = beta + n * layout.sampleStride + c * layout.channelStride
        var acc1 = zero
        var acc2 = zero
        var acc3 = zero
        if layout.elementStride == 0 {
          let bv = Float8(repeating: bp[0])
          forEachVector(plane) { i, lanes in
            let xv = load8(xp + i, lanes: lanes)
            let gv = load8(gp + i, lanes: lanes)
            let dxv = d * xv
            let u = bv * dxv
            let (h, slope) = gateValueAndSlope(u, gate)
            let t = h.addingProduct(u, slope)
            store8(gv * b.addingProduct(d, t), dp + i, lanes: lanes)
            let gx = gv * xv
            acc1 = acc1.addingProduct(gx, t)
            acc2 += gx
            acc3 = acc3.addingProduct(gv * dxv, dxv * slope)
          }
        } else {
          let db = dbetaElements! + q * plane
          forEachVector(plane) { i, lanes in
            let xv = load8(xp + i, lanes: lanes)
            let gv = load8(gp + i, lanes: lanes)
            let dxv = d * xv
            let u = load8(bp + i, lanes: lanes) * dxv
            let (h, slope) = gateValueAndSlope(u, gate)
            let t = h.addingProduct(u, slope)
            store8(gv * b.addingProduct(d, t), dp + i, lanes: lanes)
            let gx = gv * xv
            acc1 = acc1.addingProduct(gx, t)
            acc2 += gx
            store8(gv * dxv * dxv * slope, db + i, lanes: lanes)
          }
        }
        sums[3 * q] = horizontalSum(acc1)
        sums[3 * q + 1] = horizontalSum(acc2)
        sums[3 * q + 2] = horizontalSum(acc3)
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
    Elementwise.zip(a, b, y, count: count) { a, b in
      let e = a - b
      return b.addingProduct(e, fastSigmoid(e))
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
        let t = s.addingProduct(e, s - s * s)
        let dav = gv * t
        store8(dav, da + o + i, lanes: lanes)
        store8(gv - dav, db + o + i, lanes: lanes)
      }
    }
  }
}
