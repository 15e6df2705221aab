/// Stride-2 3x3 depthwise layers with padding 1 whose output plane is small
/// (``DepthwiseKernel/runsFlatStride2(_:)``): the first block of each ShuffleNetV2 stage after
/// the second on 224x224 images, of every stage on small images.
///
/// Output `(oy, ox)` reads input rows `2oy - 1 ... 2oy + 1` and columns `2ox - 1 ... 2ox + 1`.
/// Split into its four phases (row parity, column parity), each an `outHeight x outWidth`
/// plane, the input turns every tap into a flat read of one phase at a fixed offset (`0`, one
/// column back, one row back, or both): the output is then computed a whole vector of positions
/// at a time as in ``DepthwiseKernel/flatCorrelate(_:taps:weights:bias:output:mayOverrun:)``,
/// with lane masks where a tap falls into the padding. The input gradient is the same in
/// reverse: each phase of `dx` is a flat correlation of `dy` with the taps of its parity (one,
/// two or four of them, one row or column ahead), and the phases are interleaved back into the
/// rows of `dx`.
extension DepthwiseKernel {
  /// The largest output plane (in floats) that runs flat at stride 2: 16x16, from inputs up to
  /// 32x32. Batch 128, backward: 1.5 -> 1.0 ms at 24 channels of 28x28, 1.0 -> 0.5 at 96 of 7x7
  /// (forward about as fast as the padded copy); from 56x56 inputs, where splitting the planes
  /// into phases dominates, both ways were 10-30% slower.
  static let flatStride2PlaneLimit = 256

  /// The largest output plane whose input gradient alone runs flat at stride 2: 28x28, from
  /// 56x56 inputs. There the general path's gather from a padded copy of `dy` cost more than
  /// the flat correlation of `dy` and the merge of the phases (batch 32, fastest of 5 runs,
  /// 4-6 rounds alternating: 24 channels 0.71-1.32 -> 0.39-0.60 ms, 48 channels 1.42-1.97 ->
  /// 1.09-1.26, 116 channels 3.45-5.73 -> 2.82-3.40), while the forward and weight gradient
  /// of the wider layers were slower split into phases (116 channels: forward 2.1-3.6 against
  /// 3.4-4.0 ms), and keep the general path.
  static let flatStride2InputGradientPlaneLimit = 784

  /// Whether `g` runs through the flat stride-2 kernels.
  package static func runsFlatStride2(_ g: ConvGeometry) -> Bool {
    runsFlatStride2(g, upTo: flatStride2PlaneLimit)
  }

  /// Whether `g`'s input gradient runs through the flat stride-2 kernel (every layer that
  /// ``runsFlatStride2(_:)``, and those of larger planes up to
  /// ``flatStride2InputGradientPlaneLimit``).
  package static func runsFlatStride2InputGradient(_ g: ConvGeometry) -> Bool {
    runsFlatStride2(g, upTo: flatStride2InputGradientPlaneLimit)
  }

  static func runsFlatStride2(_ g: ConvGeometry, upTo limit: Int) -> Bool {
    g.isDepthwise && g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 2
      && g.padding == 1 && g.dilation == 1 && g.outHeight * g.outWidth <= limit
  }

  /// The four phase planes of one input plane (or of one input gradient plane), in a worker's
  /// scratch, and the lane masks of the flat reads.
  struct PhasePlanes {
    let height: Int
    let width: Int
    let outHeight: Int
    let outWidth: Int
    let vectors: Int
    /// Per vector: `[row and column past the first, row past the first, column past the first,
    /// inside the plane, column before the last, row before the last, both before the last]`.
    let masks: UnsafePointer<WideLaneMask>
    static let masksPerVector = 7

    /// Floats of one phase plane, and of the output plane.
    var plane: Int { outHeight * outWidth }
    /// Zeros before each phase: a read one row and one column back stays inside.
    var margin: Int { outWidth + 1 }
    /// Room for a phase: its whole vectors, and the eight floats a row's last store may spill.
    var span: Int { vectors * WideFloat.scalarCount + 16 }
    /// Floats of a scratch holding the four phases.
    var count: Int { 4 * (margin + span) }
    /// Where phase `rowParity * 2 + columnParity` starts in the scratch.
    @inline(__always) func phase(_ k: Int) -> Int { k * (margin + span) + margin }

    init(_ g: ConvGeometry) {
      let lanes = WideFloat.scalarCount
      (height, width, outHeight, outWidth) = (g.height, g.width, g.outHeight, g.outWidth)
      let vectors = (g.outHeight * g.outWidth + lanes - 1) / lanes
      self.vectors = vectors
      let (oh, ow, perVector) = (g.outHeight, g.outWidth, Self.masksPerVector)
      masks = LaneMaskTables.shared.table(for: [2, oh, ow], count: vectors * perVector) { masks in
        for v in 0..<vectors {
          var m = [WideLaneMask](repeating: WideLaneMask(repeating: 0), count: perVector)
          for l in 0..<lanes {
            let q = v * lanes + l
            guard q < oh * ow else { continue }
            let (r, s) = q.quotientAndRemainder(dividingBy: ow)
            let conditions = [
              r > 0 && s > 0, r > 0, s > 0, true, s + 1 < ow, r + 1 < oh, r + 1 < oh && s + 1 < ow,
            ]
            for (k, holds) in conditions.enumerated() where holds { m[k][l] = -1 }
          }
          for k in 0..<perVector { masks[v * perVector + k] = m[k] }
        }
      }
    }

    /// Nothing to free: the masks belong to ``DepthwiseKernel/LaneMaskTables``.
    func deallocate() {}

    /// A zeroed scratch of ``count`` floats: the phases' padding and the positions no input
    /// element maps to (the last column of the odd columns when the width is odd, likewise
    /// rows) are never written, so they stay zero from plane to plane.
    func scratch() -> UnsafeMutablePointer<Float> {
      let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
      p.update(repeating: 0, count: count)
      return p
    }

    /// Splits the `height x width` plane at `src` into its four phases in `buf`; `end` is the end
    /// of `src`'s allocation (vector loads never cross it).
    @inline(__always)
    func split(
      _ src: UnsafePointer<Float>, end: UnsafePointer<Float>, into buf: UnsafeMutablePointer<Float>
    ) {
      for y in 0..<height {
        let row = src + y * width
        let (a, r) = (y & 1, y >> 1)
        let even = buf + phase(2 * a) + r * outWidth
        let odd = buf + phase(2 * a + 1) + r * outWidth
        var k = 0
        while k < width {
          let left = width - k
          var (e, o): (Float8, Float8)
          if row + k + 16 <= end {
            (e, o) = loadDeinterleaved(row + k)
          } else {
            (e, o) = (Float8(repeating: 0), Float8(repeating: 0))
            for l in 0..<min(8, (left + 1) / 2) { e[l] = row[k + 2 * l] }
            for l in 0..<min(8, left / 2) { o[l] = row[k + 2 * l + 1] }
          }
          if left < 16 {
            // Zeros past the row: into the next phase row (written after) or the span's slack.
            e = firstLanes(e, (left + 1) / 2)
            o = firstLanes(o, left / 2)
          }
          store8(e, even + k / 2)
          store8(o, odd + k / 2)
          k += 16
        }
      }
    }

    /// Interleaves the four phases in `buf` into the `height x width` plane at `dst`. A row's
    /// last sixteen floats are stored whole when they stay inside the plane (the rows after,
    /// written after), else one by one.
    @inline(__always)
    func merge(_ buf: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
      let planeCount = height * width
      for y in 0..<height {
        let (a, r) = (y & 1, y >> 1)
        let even = buf + phase(2 * a) + r * outWidth
        let odd = buf + phase(2 * a + 1) + r * outWidth
        let row = dst + y * width
        var k = 0
        while k < width {
          let v = interleaved(load8(even + k / 2), load8(odd + k / 2))
          if y * width + k + 16 <= planeCount {
            UnsafeMutableRawPointer(row + k).storeBytes(of: v, as: SIMD16<Float>.self)
          } else {
            for l in 0..<(width - k) { row[k + l] = v[l] }
          }
          k += 16
        }
      }
    }
  }

  /// `out = bias + sum over taps of w[t] * input`, the input's four phases in `buf`.
  @inline(__always)
  static func phaseCorrelate(
    _ buf: UnsafePointer<Float>, planes: PhasePlanes, weights w: UnsafePointer<Float>,
    bias: Float, output out: UnsafeMutablePointer<Float>, mayOverrun: Bool
  ) {
    let lanes = WideFloat.scalarCount
    let ow = planes.outWidth
    let (ee, eo, oe, oo) = (
      buf + planes.phase(0), buf + planes.phase(1), buf + planes.phase(2), buf + planes.phase(3)
    )
    let (w0, w1, w2, w3, w4, w5, w6, w7, w8) = broadcastTaps(w)
    let b = WideFloat(repeating: bias)
    // Tap (i, j) reads phase (i != 1, j != 1), one row back when i == 0 and one column back
    // when j == 0; only those reads need masks (the phases are zero past the input).
    @inline(__always) func vector(_ v: Int) -> WideFloat {
      let q = v * lanes
      let m = planes.masks + v * PhasePlanes.masksPerVector
      var a0 = b.plusProduct(masked(loadWide(oo + q - ow - 1), m[0]), w0)
      var a1 = loadWide(ee + q) * w4
      var a2 = masked(loadWide(oo + q - 1), m[2]) * w6
      a0 = a0.plusProduct(masked(loadWide(oe + q - ow), m[1]), w1)
      a1 = a1.plusProduct(masked(loadWide(eo + q - 1), m[2]), w3)
      a2 = a2.plusProduct(loadWide(oe + q), w7)
      a0 = a0.plusProduct(masked(loadWide(oo + q - ow), m[1]), w2)
      a1 = a1.plusProduct(loadWide(eo + q), w5)
      a2 = a2.plusProduct(loadWide(oo + q), w8)
      return a0 + a1 + a2
    }
    storeFlatPlane(out, count: planes.plane, mayOverrun: mayOverrun, vector)
  }

  /// Adds to `sums[t]` the lanes of the weight gradient of tap `t` over one plane: `dy` (the
  /// output gradient plane, readable a vector past its end) against the input's phases in `buf`.
  @inline(__always)
  static func phaseAccumulateWeightGradient(
    _ buf: UnsafePointer<Float>, planes: PhasePlanes, dy: UnsafePointer<Float>,
    sums: UnsafeMutablePointer<WideFloat>
  ) {
    let lanes = WideFloat.scalarCount
    let ow = planes.outWidth
    let (ee, eo, oe, oo) = (
      buf + planes.phase(0), buf + planes.phase(1), buf + planes.phase(2), buf + planes.phase(3)
    )
    var s0 = sums[0]
    var s1 = sums[1]
    var s2 = sums[2]
    var s3 = sums[3]
    var s4 = sums[4]
    var s5 = sums[5]
    var s6 = sums[6]
    var s7 = sums[7]
    var s8 = sums[8]
    for v in 0..<planes.vectors {
      let q = v * lanes
      let m = planes.masks + v * PhasePlanes.masksPerVector
      // Past the plane dy holds other planes' values (maybe NaN): masked; the phases are zero.
      let g = masked(loadWide(dy + q), m[3])
      s0 = s0.plusProduct(masked(loadWide(oo + q - ow - 1), m[0]), g)
      s1 = s1.plusProduct(masked(loadWide(oe + q - ow), m[1]), g)
      s2 = s2.plusProduct(masked(loadWide(oo + q - ow), m[1]), g)
      s3 = s3.plusProduct(masked(loadWide(eo + q - 1), m[2]), g)
      s4 = s4.plusProduct(loadWide(ee + q), g)
      s5 = s5.plusProduct(loadWide(eo + q), g)
      s6 = s6.plusProduct(masked(loadWide(oo + q - 1), m[2]), g)
      s7 = s7.plusProduct(loadWide(oe + q), g)
      s8 = s8.plusProduct(loadWide(oo + q), g)
    }
    (sums[0], sums[1], sums[2], sums[3]) = (s0, s1, s2, s3)
    (sums[4], sums[5], sums[6], sums[7], sums[8]) = (s4, s5, s6, s7, s8)
  }

  /// The four phases of one plane's input gradient into `buf`, from `dy` (readable a row and a
  /// vector past its end): even rows and columns take tap (1, 1); odd columns taps (1, 0) from
  /// one column ahead and (1, 2); odd rows taps (0, 1) from one row ahead and (2, 1); odd rows
  /// and columns the four corners.
  @inline(__always)
  static func phaseInputGradient(
    _ dy: UnsafePointer<Float>, planes: PhasePlanes, weights w: UnsafePointer<Float>,
    into buf: UnsafeMutablePointer<Float>
  ) {
    let lanes = WideFloat.scalarCount
    let ow = planes.outWidth
    let (ee, eo, oe, oo) = (
      buf + planes.phase(0), buf + planes.phase(1), buf + planes.phase(2), buf + planes.phase(3)
    )
    let (w0, w1, w2, w3, w4, w5, w6, w7, w8) = broadcastTaps(w)
    for v in 0..<planes.vectors {
      let q = v * lanes
      let m = planes.masks + v * PhasePlanes.masksPerVector
      let here = loadWide(dy + q)
      let right = masked(loadWide(dy + q + 1), m[4])
      let below = masked(loadWide(dy + q + ow), m[5])
      let corner = masked(loadWide(dy + q + ow + 1), m[6])
      storeWide(here * w4, ee + q)
      storeWide((here * w5).plusProduct(right, w3), eo + q)
      storeWide((here * w7).plusProduct(below, w1), oe + q)
      let a = (here * w8).plusProduct(right, w6)
      storeWide(a.plusProduct(below, w2).plusProduct(corner, w0), oo + q)
    }
  }

  /// ``forward(_:input:weight:bias:output:)`` of a layer that ``runsFlatStride2(_:)``.
  static func flatStride2Forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    let planes = PhasePlanes(g)
    defer { planes.deallocate() }
    let (channels, plane, outPlane) = (g.inChannels, g.height * g.width, planes.plane)
    let items = g.batch * channels
    let xEnd = x + items * plane
    Parallel.forRanges(items, minimumChunk: max(1, 8192 / plane)) { range in
      let buf = planes.scratch()
      defer { buf.deallocate() }
      for item in range {
        let c = item % channels
        planes.split(x + item * plane, end: xEnd, into: buf)
        phaseCorrelate(
          buf, planes: planes, weights: weight + c * 9, bias: bias?[c] ?? 0,
          output: y + item * outPlane,
          mayOverrun: partialVectorFits(plane: outPlane, following: range.upperBound - item - 1))
      }
    }
  }

  /// ``backward(_:input:weight:outputGrad:inputGrad:weightGrad:)`` of a layer that
  /// ``runsFlatStride2(_:)`` (or its input gradient alone, `dw` nil, of a layer that
  /// ``runsFlatStride2InputGradient(_:)``), on ``forEachWorkerPlane(items:channels:plane:weightGrad:scratch:_:)``.
  static func flatStride2Backward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?
  ) {
    let planes = PhasePlanes(g)
    let channels = g.inChannels
    let (plane, outPlane) = (g.height * g.width, planes.plane)
    let items = g.batch * channels
    let (xEnd, dyEnd) = (x + items * plane, dy + items * outPlane)
    defer { planes.deallocate() }
    // dy is read up to a row and a vector past a plane: the last planes go through a copy.
    let dyReach = planes.vectors * WideFloat.scalarCount + planes.outWidth + 1
    forEachWorkerPlane(
      items: items, channels: channels, plane: outPlane, weightGrad: dw,
      scratch: 2 * planes.count + dyReach
    ) { item, _, lanesSums, scratch in
      let (xPhases, dxPhases, dyCopy) = (
        scratch, scratch + planes.count, scratch + 2 * planes.count
      )
      let c = item % channels
      var gp = dy + item * outPlane
      if gp + dyReach > dyEnd {
        dyCopy.update(from: gp, count: outPlane)
        gp = UnsafePointer(dyCopy)
      }
      if let dx {
        phaseInputGradient(gp, planes: planes, weights: weight + c * 9, into: dxPhases)
        planes.merge(dxPhases, into: dx + item * plane)
      }
      if let lanesSums {
        planes.split(x + item * plane, end: xEnd, into: xPhases)
        phaseAccumulateWeightGradient(xPhases, planes: planes, dy: gp, sums: lanesSums + c * 9)
      }
    }
  }
}
