/// Batch-normalisation kernels over `[N, C, plane]` float buffers (`plane` = H * W, or 1 for
/// `[N, C]` input), split across the cores by channel.
///
/// Each channel's statistics are reduced in one pass over deviations from a provisional mean
/// (the mean of the channel's plane in the first image), with Float64 accumulation of vector
/// partial sums (`LaneSums`): the mean and variance stay accurate when the mean is large against
/// the spread, without a pass that reads the whole input for the mean first.
public enum BatchNormKernel {
  /// How many channels one parallel chunk should hold so that it carries enough work.
  @inlinable
  static func channelChunk(batch n: Int, plane: Int) -> Int {
    max(1, 32_768 / max(1, n * plane))
  }

  /// The mean of one plane of `plane` values in Float64; `end` is the end of `x`'s allocation
  /// (a row's last, partial vector is one load when it lies before `end`).
  @inlinable @inline(__always)
  static func planeMean(
    _ x: UnsafePointer<Float>, plane: Int, end: UnsafePointer<Float>
  ) -> Double {
    // Deviations from 0 are the values themselves (x - 0 is exact).
    let row = rowDeviations(x, plane: plane, mean: 0, end: end, squares: false)
    return (LaneSums.reduced(row.linear) + Double(row.restLinear)) / Double(plane)
  }

  /// Sums of `x - mean` and (with `squares`) `(x - mean)^2` over one row of `plane` values, lane
  /// by lane, with what did not fit a vector (only the allocation's last rows) as scalars (`end`
  /// as in ``planeMean(_:plane:end:)``); ``LaneSums`` says how they are reduced over rows.
  ///
  /// Two accumulators per sum: one is a chain of dependent adds, which held the pass to a
  /// third of what the loads allow.
  @inlinable @inline(__always)
  static func rowDeviations(
    _ row: UnsafePointer<Float>, plane: Int, mean: Float, end: UnsafePointer<Float>,
    squares withSquares: Bool = true
  ) -> (linear: WideFloat, squares: WideFloat, restLinear: Float, restSquares: Float) {
    let lanes = WideFloat.scalarCount
    let m = WideFloat(repeating: mean)
    var (linear0, linear1) = (WideFloat(repeating: 0), WideFloat(repeating: 0))
    var (squares0, squares1) = (WideFloat(repeating: 0), WideFloat(repeating: 0))
    var i = 0
    while i + 2 * lanes <= plane {
      let d0 = loadWide(row + i) - m
      let d1 = loadWide(row + i + lanes) - m
      linear0 += d0
      linear1 += d1
      if withSquares {
        squares0 = squares0.plusProduct(d0, d0)
        squares1 = squares1.plusProduct(d1, d1)
      }
      i += 2 * lanes
    }
    if i + lanes <= plane {
      let d = loadWide(row + i) - m
      linear0 += d
      if withSquares { squares0 = squares0.plusProduct(d, d) }
      i += lanes
    }
    if i < plane && row + i + lanes <= end {
      // The lanes past the row become zero deviations.
      let d = masked(loadWide(row + i) - m, wideLaneMask(keepingFirst: plane - i))
      linear1 += d
      if withSquares { squares1 = squares1.plusProduct(d, d) }
      i = plane
    }
    var (restLinear, restSquares): (Float, Float) = (0, 0)
    while i < plane {
      let d = row[i] - mean
      restLinear += d
      restSquares += d * d
      i += 1
    }
    return (linear0 + linear1, squares0 + squares1, restLinear, restSquares)
  }

  /// Per-channel mean and biased variance of `x` (`[n, channels, plane]`) over batch and plane;
  /// with `centredPlaneMeans` (`[n, channels]`), also each plane's mean of `x - mean[channel]`
  /// from the same passes (what meta-ACON's pooled means need after a fused batch norm).
  ///
  /// The provisional mean `m0` is the mean of the channel's plane in the first image (which
  /// lies within the channel's spread); one pass then sums `d = x - m0` and `d^2`. The mean is
  /// `m0 + sum(d) / M` and the variance `(sum(d^2) - sum(d)^2 / M) / M` (the corrected two-pass
  /// formula, with its first pass over one plane), and the centred plane means come from the
  /// plane sums of `d`: nothing is formed as a difference of two numbers of the input's
  /// magnitude, so an input whose mean is large against its spread (raw 0..255 pixels) loses no
  /// precision. (Summing the whole channel for `m0` first cost a read of the input: a quarter of
  /// the forward traffic of a batch norm and the activation fused after it.)
  public static func statistics(
    _ x: UnsafePointer<Float>, batch n: Int, channels c: Int, plane: Int,
    mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>,
    centredPlaneMeans: UnsafeMutablePointer<Float>? = nil
  ) {
    if plane == 1 {
      statisticsOfRows(
        x, batch: n, channels: c, mean: mean, variance: variance,
        centredPlaneMeans: centredPlaneMeans)
    } else {
      statisticsByChannel(
        x, batch: n, channels: c, plane: plane, mean: mean, variance: variance,
        centredPlaneMeans: centredPlaneMeans)
    }
  }

  /// Adds one channel's rows `rows` (row `b` at `base + b * stride`) to its lane sums of
  /// `x - provisional` and its square, the rows' floats past their whole vectors to `totals`
  /// in Float64; with `planeMeans`, writes each row's mean of `x - provisional` at
  /// `planeMeans[b * planeMeansStride]`.
  @inline(__always)
  static func addDeviations(
    _ base: UnsafePointer<Float>, rows: Range<Int>, stride: Int, plane: Int,
    end: UnsafePointer<Float>, provisional: Float, planeMeans: UnsafeMutablePointer<Float>?,
    planeMeansStride: Int, lanes: inout (WideFloat, WideFloat), totals: inout (Double, Double)
  ) {
    var (linear, squares) = lanes
    var (restLinear, restSquares) = totals
    for b in rows {
      let row = rowDeviations(base + b * stride, plane: plane, mean: provisional, end: end)
      if let planeMeans {
        let sum = LaneSums.reduced(row.linear) + Double(row.restLinear)
        planeMeans[b * planeMeansStride] = Float(sum / Double(plane))
      }
      linear += row.linear
      squares += row.squares
      restLinear += Double(row.restLinear)
      restSquares += Double(row.restSquares)
    }
    (lanes, totals) = ((linear, squares), (restLinear, restSquares))
  }

  /// ``statistics(_:batch:channels:plane:mean:variance:centredPlaneMeans:)`` channel by channel,
  /// or on small planes of many channels in blocks of channels a few images at a time
  /// (``ChannelVisits``; the same bits either way; planes of one float run
  /// ``statisticsOfRows(_:batch:channels:mean:variance:centredPlaneMeans:)``).
  static func statisticsByChannel(
    _ x: UnsafePointer<Float>, batch n: Int, channels c: Int, plane: Int,
    mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>,
    centredPlaneMeans: UnsafeMutablePointer<Float>?
  ) {
    let stride = c * plane
    let end = x + n * stride
    let visits = ChannelVisits.forLayer(channels: c, plane: plane)
    @inline(__always) func finish(_ ch: Int, provisional: Float, totals: (Double, Double)) {
      let count = Double(n * plane)
      let correction = totals.0 / count
      mean[ch] = Float(Double(provisional) + correction)
      variance[ch] = Float(max(0, totals.1 / count - correction * correction))
      guard let centredPlaneMeans else { return }
      // From the provisional mean to the stored one (a difference of two floats, exact).
      let shift = Double(provisional) - Double(mean[ch])
      for b in 0..<n {
        centredPlaneMeans[b * c + ch] = Float(Double(centredPlaneMeans[b * c + ch]) + shift)
      }
    }
    let zero = WideFloat(repeating: 0)
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      guard visits.visitsBlocks else {
        for ch in range {
          let provisional = Float(planeMean(x + ch * plane, plane: plane, end: end))
          var totals = (0.0, 0.0)
          // Lane sums over a few rows at a time, then into Float64 (see LaneSums).
          for rows in LaneSums.rowBlocks(n, plane: plane) {
            var lanes = (zero, zero)
            addDeviations(
              x + ch * plane, rows: rows, stride: stride, plane: plane, end: end,
              provisional: provisional, planeMeans: centredPlaneMeans.map { $0 + ch },
              planeMeansStride: c, lanes: &lanes, totals: &totals)
            totals.0 += LaneSums.reduced(lanes.0)
            totals.1 += LaneSums.reduced(lanes.1)
          }
          finish(ch, provisional: provisional, totals: totals)
        }
        return
      }
      // Per channel of a block: its two lane sums within a row block, and their Float64
      // totals beside its provisional mean.
      let blockSums = ChannelVisits.Sums(visits, lanesPerChannel: 2, totalsPerChannel: 3)
      defer { blockSums.free() }
      let (sums, totals) = (blockSums.lanes, blockSums.totals)
      for block in visits.blocks(of: range) {
        blockSums.startBlock(block)
        for ch in block {
          totals[3 * (ch - block.lowerBound) + 2] = planeMean(
            x + ch * plane, plane: plane, end: end)
        }
        for rows in LaneSums.rowBlocks(n, plane: plane) {
          blockSums.startFold(block)
          for images in visits.groups(of: rows) {
            for ch in block {
              let j = ch - block.lowerBound
              var lanes = (sums[2 * j], sums[2 * j + 1])
              var channelTotals = (totals[3 * j], totals[3 * j + 1])
              addDeviations(
                x + ch * plane, rows: images, stride: stride, plane: plane, end: end,
                provisional: Float(totals[3 * j + 2]),
                planeMeans: centredPlaneMeans.map { $0 + ch }, planeMeansStride: c,
                lanes: &lanes, totals: &channelTotals)
              (sums[2 * j], sums[2 * j + 1]) = lanes
              (totals[3 * j], totals[3 * j + 1]) = channelTotals
            }
          }
          for j in 0..<block.count {
            totals[3 * j] += LaneSums.reduced(sums[2 * j])
            totals[3 * j + 1] += LaneSums.reduced(sums[2 * j + 1])
          }
        }
        for ch in block {
          let j = ch - block.lowerBound
          finish(
            ch, provisional: Float(totals[3 * j + 2]), totals: (totals[3 * j], totals[3 * j + 1]))
        }
      }
    }
  }

  /// The affine map `y = x * scale + shift` batch norm applies to one channel.
  @inlinable @inline(__always)
  static func affine(
    _ ch: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?
  ) -> (scale: Float, shift: Float) {
    let scale = invStd[ch] * (weight?[ch] ?? 1)
    return (scale, (bias?[ch] ?? 0) - mean[ch] * scale)
  }

  /// `y = (x - mean) * invStd * weight + bias` per channel, as one multiply-add per element;
  /// with `residual`, `y += residual` (a residual block's shortcut); with `relu`,
  /// `y = max(that, 0)` in the same pass (batch norm fused with the ReLU after it). `weight` and
  /// `bias` may be nil (1 and 0).
  public static func normalize(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch n: Int, channels c: Int,
    plane: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, relu: Bool = false,
    residual: UnsafePointer<Float>? = nil
  ) {
    if plane == 1 {
      normalizeRows(
        x, y, batch: n, channels: c, mean: mean, invStd: invStd, weight: weight, bias: bias,
        relu: relu, residual: residual)
    } else {
      normalizeByChannel(
        x, y, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd, weight: weight,
        bias: bias, relu: relu, residual: residual)
    }
  }

  /// ``normalize(_:_:batch:channels:plane:mean:invStd:weight:bias:relu:residual:)`` channel by
  /// channel, or in blocks of channels a few images at a time (``ChannelVisits``).
  static func normalizeByChannel(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch n: Int, channels c: Int,
    plane: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, relu: Bool,
    residual: UnsafePointer<Float>?
  ) {
    let stride = c * plane
    let lanes = WideFloat.scalarCount
    let zero = WideFloat(repeating: 0)
    let visits = ChannelVisits.forLayer(channels: c, plane: plane)
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      visits.forEach(channelsIn: range, images: 0..<n) { ch, images in
        let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
        let (sv, hv) = (WideFloat(repeating: scale), WideFloat(repeating: shift))
        let (sv8, hv8) = (Float8(repeating: scale), Float8(repeating: shift))
        let zero8 = Float8(repeating: 0)
        for b in images {
          let src = x + b * stride + ch * plane
          let dst = y + b * stride + ch * plane
          if let residual {
            let res = residual + b * stride + ch * plane
            forEachVector(plane) { i, lanes in
              var v =
                hv8.plusProduct(load8(src + i, lanes: lanes), sv8) + load8(res + i, lanes: lanes)
              if relu { v = v.replacing(with: zero8, where: v .< zero8) }
              store8(v, dst + i, lanes: lanes)
            }
            continue
          }
          var i = 0
          while i + lanes <= plane {
            var v = hv.plusProduct(loadWide(src + i), sv)
            if relu { v = v.replacing(with: zero, where: v .< zero) }
            storeWide(v, dst + i)
            i += lanes
          }
          while i < plane {
            // The same fused multiply-add as the vector body, so a pullback that recomputes
            // the ReLU's gate sees exactly the forward values.
            let v = shift.plusProduct(src[i], scale)
            dst[i] = relu && v < 0 ? 0 : v
            i += 1
          }
        }
      }
    }
  }

  /// Per-channel `sum(g)` and `sum(g * (x - mean))`, in Float64, for the backward passes.
  /// With `relu`, `g` is `dy` gated by the fused ReLU (zero where `x * scale + shift <= 0`).
  @inline(__always)
  static func gradientSums(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, n: Int, plane: Int, stride: Int,
    mean: Float, relu: Bool, scale: Float, shift: Float
  ) -> (Double, Double) {
    var sums = (0.0, 0.0)
    // Lane sums over a few rows at a time, then into Float64 (see LaneSums).
    for rows in LaneSums.rowBlocks(n, plane: plane) {
      var lanes = GradientLanes()
      addGradientSums(
        x, dy, rows: rows, plane: plane, stride: stride, mean: mean, relu: relu, scale: scale,
        shift: shift, lanes: &lanes, tails: &sums)
      sums.0 += LaneSums.reduced(lanes.dy0 + lanes.dy1)
      sums.1 += LaneSums.reduced(lanes.dyXc0 + lanes.dyXc1)
    }
    return sums
  }

  /// The lane sums of `g` and `g * (x - mean)`, two accumulators per sum (see rowDeviations).
  struct GradientLanes {
    var dy0 = WideFloat(repeating: 0)
    var dy1 = WideFloat(repeating: 0)
    var dyXc0 = WideFloat(repeating: 0)
    var dyXc1 = WideFloat(repeating: 0)
  }

  /// Adds one channel's rows `rows` to its lane sums; each row's floats past its whole vectors
  /// go into `tails` in Float64, row by row.
  @inline(__always)
  static func addGradientSums(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Range<Int>, plane: Int,
    stride: Int, mean: Float, relu: Bool, scale: Float, shift: Float,
    lanes: inout GradientLanes, tails: inout (Double, Double)
  ) {
    let count = WideFloat.scalarCount
    let m = WideFloat(repeating: mean)
    let sv = WideFloat(repeating: scale)
    let hv = WideFloat(repeating: shift)
    let zero = WideFloat(repeating: 0)
    var (a1, b1, a2, b2) = (lanes.dy0, lanes.dy1, lanes.dyXc0, lanes.dyXc1)
    for b in rows {
      let xr = x + b * stride
      let gr = dy + b * stride
      var i = 0
      while i + 2 * count <= plane {
        let (x0, x1) = (loadWide(xr + i), loadWide(xr + i + count))
        var (g0, g1) = (loadWide(gr + i), loadWide(gr + i + count))
        if relu {
          g0 = g0.replacing(with: zero, where: hv.plusProduct(x0, sv) .<= zero)
          g1 = g1.replacing(with: zero, where: hv.plusProduct(x1, sv) .<= zero)
        }
        a1 += g0
        b1 += g1
        a2 = a2.plusProduct(g0, x0 - m)
        b2 = b2.plusProduct(g1, x1 - m)
        i += 2 * count
      }
      if i + count <= plane {
        let xv = loadWide(xr + i)
        var g = loadWide(gr + i)
        if relu { g = g.replacing(with: zero, where: hv.plusProduct(xv, sv) .<= zero) }
        a1 += g
        a2 = a2.plusProduct(g, xv - m)
        i += count
      }
      var t1: Float = 0
      var t2: Float = 0
      while i < plane {
        let g = relu && shift.plusProduct(xr[i], scale) <= 0 ? 0 : gr[i]
        t1 += g
        t2 += g * (xr[i] - mean)
        i += 1
      }
      tails = (tails.0 + Double(t1), tails.1 + Double(t2))
    }
    lanes = GradientLanes(dy0: a1, dy1: b1, dyXc0: a2, dyXc1: b2)
  }

  /// Backward of batch norm in training mode, through the batch statistics, in one read of
  /// `x` and `dy` for the sums and one more for `dx`:
  ///
  ///     xhat = (x - mean) * invStd
  ///     dbias = sum(dy), dweight = sum(dy * xhat)
  ///     dx = weight * invStd * (dy - dbias / M - xhat * dweight / M),  M = n * plane
  ///
  /// With `relu` (the forward ran fused with a ReLU), `dy` is first gated by the ReLU, which is
  /// recomputed from `x`, so nothing but `x` is kept. `dx`, `dweight`, `dbias` may be nil.
  public static func backwardTraining(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
    batch n: Int, channels c: Int, plane: Int, mean: UnsafePointer<Float>,
    invStd: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    relu: Bool, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?
  ) {
    if plane == 1 {
      backwardTrainingRows(
        x, dy, dx: dx, batch: n, channels: c, mean: mean, invStd: invStd, weight: weight,
        bias: bias, relu: relu, dweight: dweight, dbias: dbias)
    } else {
      backwardTrainingByChannel(
        x, dy, dx: dx, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd,
        weight: weight, bias: bias, relu: relu, dweight: dweight, dbias: dbias)
    }
  }

  /// ``backwardTraining(_:_:dx:batch:channels:plane:mean:invStd:weight:bias:relu:dweight:dbias:)``
  /// channel by channel, or in blocks of channels a few images at a time (``ChannelVisits``;
  /// the same bits either way): a block's sums, then its `dx`.
  static func backwardTrainingByChannel(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
    batch n: Int, channels c: Int, plane: Int, mean: UnsafePointer<Float>,
    invStd: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    relu: Bool, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?
  ) {
    let stride = c * plane
    let count = Double(n * plane)
    let visits = ChannelVisits.forLayer(channels: c, plane: plane)
    // One channel's parameter gradients, and its `dx` over `rows`, from its two sums.
    @inline(__always) func parameterGradients(_ ch: Int, _ sums: (Double, Double)) {
      dbias?[ch] = Float(sums.0)
      dweight?[ch] = Float(sums.1 * Double(invStd[ch]))
    }
    @inline(__always) func inputGradient(_ ch: Int, _ rows: Range<Int>, _ sums: (Double, Double)) {
      guard let dx else { return }
      let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
      trainingInputGradient(
        x + ch * plane, dy + ch * plane, dx + ch * plane, rows: rows, plane: plane,
        stride: stride, mean: mean[ch], invStd: invStd[ch], weight: weight?[ch] ?? 1,
        sumDy: sums.0, sumDyXhat: sums.1 * Double(invStd[ch]), count: count, relu: relu,
        scale: scale, shift: shift)
    }
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      guard visits.visitsBlocks else {
        for ch in range {
          let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
          let sums = gradientSums(
            x + ch * plane, dy + ch * plane, n: n, plane: plane, stride: stride, mean: mean[ch],
            relu: relu, scale: scale, shift: shift)
          parameterGradients(ch, sums)
          inputGradient(ch, 0..<n, sums)
        }
        return
      }
      // Per channel of a block: its four lane sums within a row block, then the two Float64
      // sums.
      let blockSums = ChannelVisits.Sums(visits, lanesPerChannel: 4, totalsPerChannel: 2)
      defer { blockSums.free() }
      let totals = blockSums.totals
      for block in visits.blocks(of: range) {
        blockSums.startBlock(block)
        for rows in LaneSums.rowBlocks(n, plane: plane) {
          blockSums.startFold(block)
          for images in visits.groups(of: rows) {
            for ch in block {
              let j = ch - block.lowerBound
              let (scale, shift) = affine(
                ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
              let l = blockSums.lanes + 4 * j
              var lanes = GradientLanes(dy0: l[0], dy1: l[1], dyXc0: l[2], dyXc1: l[3])
              var tails = (totals[2 * j], totals[2 * j + 1])
              addGradientSums(
                x + ch * plane, dy + ch * plane, rows: images, plane: plane, stride: stride,
                mean: mean[ch], relu: relu, scale: scale, shift: shift, lanes: &lanes,
                tails: &tails)
              (l[0], l[1], l[2], l[3]) = (lanes.dy0, lanes.dy1, lanes.dyXc0, lanes.dyXc1)
              (totals[2 * j], totals[2 * j + 1]) = tails
            }
          }
          for j in 0..<block.count {
            let l = blockSums.lanes + 4 * j
            totals[2 * j] += LaneSums.reduced(l[0] + l[1])
            totals[2 * j + 1] += LaneSums.reduced(l[2] + l[3])
          }
        }
        for ch in block {
          let j = ch - block.lowerBound
          parameterGradients(ch, (totals[2 * j], totals[2 * j + 1]))
        }
        guard dx != nil else { continue }
        visits.forEach(channelsIn: block, images: 0..<n) { ch, images in
          let j = ch - block.lowerBound
          inputGradient(ch, images, (totals[2 * j], totals[2 * j + 1]))
        }
      }
    }
  }

  /// The coefficients of one channel's input gradient in training mode, from the batch norm's
  /// sums over its `count` values: `dx = k * (g - a - (x - mean) * b)` is computed as
  /// `g * k + ((x - mean) * q + r)`, where centring `x` first keeps `x * q` and `mean * q`, two
  /// numbers of the input's magnitude, from cancelling.
  @inlinable @inline(__always)
  public static func trainingCoefficients(
    weight: Float, invStd inv: Float, sumDy: Double, sumDyXhat: Double, count: Double
  ) -> (k: Float, q: Float, r: Float) {
    let k = weight * inv
    let a = Float(sumDy / count)
    let bq = Float(sumDyXhat / count) * inv
    return (k, -k * bq, -k * a)
  }

  /// One channel's `dx` in training mode from its sums (see
  /// ``backwardTraining(_:_:dx:batch:channels:plane:mean:invStd:weight:bias:relu:dweight:dbias:)``).
  @inlinable @inline(__always)
  static func trainingInputGradient(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    rows: Range<Int>, plane: Int, stride: Int, mean mu: Float, invStd inv: Float, weight: Float,
    sumDy: Double, sumDyXhat: Double, count: Double, relu: Bool, scale: Float, shift: Float
  ) {
    let (k, q, r) = trainingCoefficients(
      weight: weight, invStd: inv, sumDy: sumDy, sumDyXhat: sumDyXhat, count: count)
    let (kv, qv, rv) = (WideFloat(repeating: k), WideFloat(repeating: q), WideFloat(repeating: r))
    let mv = WideFloat(repeating: mu)
    let sv = WideFloat(repeating: scale)
    let hv = WideFloat(repeating: shift)
    let zero = WideFloat(repeating: 0)
    let lanes = WideFloat.scalarCount
    for b in rows {
      let xr = x + b * stride
      let gr = dy + b * stride
      let dr = dx + b * stride
      var i = 0
      while i + lanes <= plane {
        let xv = loadWide(xr + i)
        var g = loadWide(gr + i)
        if relu { g = g.replacing(with: zero, where: hv.plusProduct(xv, sv) .<= zero) }
        storeWide(rv.plusProduct(xv - mv, qv).plusProduct(g, kv), dr + i)
        i += lanes
      }
      while i < plane {
        let g = relu && shift.plusProduct(xr[i], scale) <= 0 ? 0 : gr[i]
        dr[i] = g * k + ((xr[i] - mu) * q + r)
        i += 1
      }
    }
  }

  /// Backward of `y = relu(batchNorm(x) + residual)` in training mode: one pass gates `dy` by
  /// `y > 0` into `dz` (the residual's gradient, which the batch norm's sums read in the same
  /// pass), one more turns `dz` into `dx` as ``backwardTraining(_:_:dx:batch:channels:plane:mean:invStd:weight:bias:relu:dweight:dbias:)``
  /// does. Reads `x`, `y`, `dy` once and `x`, `dz` once more: two passes fewer than a ReLU,
  /// an add and a batch norm run one after the other.
  public static func backwardTrainingAfterResidualReLU(
    _ x: UnsafePointer<Float>, output y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
    dz: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch n: Int,
    channels c: Int, plane: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?
  ) {
    let stride = c * plane
    let count = Double(n * plane)
    let zero = Float8(repeating: 0)
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      for ch in range {
        let (mu, inv) = (mean[ch], invStd[ch])
        let m = Float8(repeating: mu)
        var sumDy = 0.0
        var sumDyXc = 0.0
        for b in 0..<n {
          let o = b * stride + ch * plane
          var a1 = Float8(repeating: 0)
          var a2 = Float8(repeating: 0)
          forEachVector(plane) { i, lanes in
            let g = load8(dy + o + i, lanes: lanes).replacing(
              with: zero, where: load8(y + o + i, lanes: lanes) .<= zero)
            store8(g, dz + o + i, lanes: lanes)
            a1 += g
            a2 = a2.plusProduct(g, load8(x + o + i, lanes: lanes) - m)
          }
          sumDy += Double(horizontalSum(a1))
          sumDyXc += Double(horizontalSum(a2))
        }
        let sumDyXhat = sumDyXc * Double(inv)
        dbias?[ch] = Float(sumDy)
        dweight?[ch] = Float(sumDyXhat)
        guard let dx else { continue }
        let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
        trainingInputGradient(
          x + ch * plane, dz + ch * plane, dx + ch * plane, rows: 0..<n, plane: plane,
          stride: stride, mean: mu, invStd: inv, weight: weight?[ch] ?? 1, sumDy: sumDy,
          sumDyXhat: sumDyXhat, count: count, relu: false, scale: scale, shift: shift)
      }
    }
  }

  /// Backward of batch norm with fixed statistics (evaluation mode): `dx = g * weight * invStd`,
  /// with the same `dweight`, `dbias` as in training; `g` is `dy`, gated by the fused ReLU when
  /// `relu`. Any output may be nil.
  public static func backwardEval(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
    batch n: Int, channels c: Int, plane: Int, mean: UnsafePointer<Float>,
    invStd: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    relu: Bool, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?
  ) {
    let stride = c * plane
    let zero = Float8(repeating: 0)
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      for ch in range {
        let inv = invStd[ch]
        let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
        if dweight != nil || dbias != nil {
          let (sumDy, sumDyXc) = gradientSums(
            x + ch * plane, dy + ch * plane, n: n, plane: plane, stride: stride, mean: mean[ch],
            relu: relu, scale: scale, shift: shift)
          dbias?[ch] = Float(sumDy)
          dweight?[ch] = Float(sumDyXc * Double(inv))
        }
        guard let dx else { continue }
        let k = (weight?[ch] ?? 1) * inv
        let kv = Float8(repeating: k)
        let sv = Float8(repeating: scale)
        let hv = Float8(repeating: shift)
        for b in 0..<n {
          let xr = x + b * stride + ch * plane
          let gr = dy + b * stride + ch * plane
          let dr = dx + b * stride + ch * plane
          var i = 0
          while i + 8 <= plane {
            var g = load8(gr + i)
            if relu {
              g = g.replacing(with: zero, where: hv.plusProduct(load8(xr + i), sv) .<= zero)
            }
            store8(g * kv, dr + i)
            i += 8
          }
          while i < plane {
            let g = relu && shift.plusProduct(xr[i], scale) <= 0 ? 0 : gr[i]
            dr[i] = g * k
            i += 1
          }
        }
      }
    }
  }
}
