/// A batch norm and the ACON after it as one layer (the pair every ShuffleNetV2, ResNet and
/// MobileNet block has): `y = acon(z)`, `z = x * scale + shift` per channel, where
/// `scale = weight / std` and `shift = bias - mean * scale`.
///
/// Bytes per element, against the two layers run one after the other:
/// - forward: batch statistics (1 read of `x`) and one pass that normalises and activates
///   (read 4, write 4): 12 instead of 20, and `z` is neither written nor kept;
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
    // A sigmoid per element makes even a small layer worth two threads: at batch 1 (4K to 75K
    // elements a layer) chunks of 4096 elements rather than 32768 took ShuffleNetV2's 37 layers
    // from 0.48-0.60 to 0.39-0.48 ms a step.
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 4096 / plane)) { planes in
      let rest = normalizedForwardRun(x, y, geo, planes, scale, shift, p1, p2, beta, layout, G.self)
      for q in rest {
        // The run's last planes, whose partial vector may not run past the run: normalise the
        // plane into y, then activate it in place while it is still in L1.
        let (n, c) = q.quotientAndRemainder(dividingBy: channels)
        normalizeThenActivate(
          x + q * plane, y + q * plane, plane, scale[c], shift[c], p1[c] - p2[c], p2[c],
          beta[n * layout.sampleStride + c * layout.channelStride], false, G.self)
      }
    }
  }

  /// `count` floats of one plane normalised into `y`, then activated there in place while they
  /// are still in L1 (`mayOverrun`: as ``forwardPlane(_:_:_:_:_:_:_:_:)``, for `y` only; `x` is
  /// never read past `count`).
  @inline(__always)
  static func normalizeThenActivate<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ scale: Float,
    _ shift: Float, _ d: Float, _ p2: Float, _ beta: Float, _ mayOverrun: Bool, _: G.Type
  ) {
    let (sv, hv) = (WideFloat(repeating: scale), WideFloat(repeating: shift))
    writePlane(y, count: count, mayOverrun: false) {
      hv.plusProduct(loadWide(x + $0), sv)
    } scalar: {
      hv[0].plusProduct(x[$0], sv[0])
    }
    forwardPlane(
      y, y, count, Float8(repeating: d), Float8(repeating: p2), Float8(repeating: beta),
      mayOverrun, G.self)
  }

  /// The planes of one worker's run as one loop, each vector normalised in registers as it is
  /// read (x read once, y written once, nothing in between), a plane's last, partial vector
  /// masked. One loop rather than a call per plane also lets one plane's sigmoid chains overlap
  /// the next plane's, which matters on 7x7 and 4x4 planes of one to four vectors: against
  /// normalising into y and then activating y in a call per plane, forward 1.2-1.6x faster on
  /// 56x56 to 7x7 planes and 3.5x on 4x4. Returns the planes left: the last ones of the run,
  /// whose partial vector would run past it.
  @inline(never)
  static func normalizedForwardRun<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: Geometry,
    _ planes: Range<Int>, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
    _ layout: BetaLayout, _: G.Type
  ) -> Range<Int> {
    let (channels, plane) = (geo.channels, geo.plane)
    let lanes = WideFloat.scalarCount
    // The mask is chosen, not computed, in the loop (see ACONKernel.forwardPlane).
    let (all, tail) = (WideLaneMask(repeating: -1), wideLaneMask(keepingFirst: plane % lanes))
    var q = planes.lowerBound
    var (n, c) = q.quotientAndRemainder(dividingBy: channels)
    while q < planes.upperBound
      && partialVectorFits(plane: plane, following: planes.upperBound - q - 1)
    {
      let o = q * plane
      let (sv, hv) = (WideFloat(repeating: scale[c]), WideFloat(repeating: shift[c]))
      let (d, p2v) = (WideFloat(repeating: p1[c] - p2[c]), WideFloat(repeating: p2[c]))
      let b = WideFloat(repeating: beta[n * layout.sampleStride + c * layout.channelStride])
      var i = 0
      while i < plane {
        let keep = plane - i >= lanes ? all : tail
        let z = masked(hv.plusProduct(loadWide(x + o + i), sv), keep)
        storeWide(forwardVector(z, d, p2v, b, G.self), y + o + i, keeping: keep)
        i += lanes
      }
      q += 1
      c += 1
      if c == channels { (n, c) = (n + 1, 0) }
    }
    return q..<planes.upperBound
  }

  /// The ACON half of the fused pullback: from `x` and the upstream gradient `g`, writes
  /// `dz = dL/dz` (may alias `g`), the ACON's three sums per plane into `planeSums` (as
  /// ``backward(_:_:_:geometry:p1:p2:beta:layout:gate:planeSums:dbetaElements:)``) and the batch
  /// norm's two into `normSums`: `sum dz` and `sum dz (x - mean[c])` per plane. Layers that
  /// ``runsByChannel(_:_:)`` put a channel's whole sums in its first image's slots and zeros in
  /// the others': read the sums only added up over the images.
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
    if runsByChannel(geo, layout) {
      normalizedBackwardByChannel(
        x, g, dz, geo, scale, shift, mean, p1, p2, beta, layout, G.self, sums, normSums)
      return
    }
    let (channels, plane) = (geo.channels, geo.plane)
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      for q in planes {
        normalizedPlaneBackward(
          x, g + q * plane, dz, q, geo, scale, shift, mean, p1, p2, beta, layout,
          partialVectorFits(plane: plane, following: planes.upperBound - q - 1), G.self, sums,
          normSums)
      }
    }
  }

  /// Plane `q` of the fused backward's first pass, plane by plane: its gradient read from `g`
  /// (the plane's own), `dz` and its five sums written at `q`'s places.
  @inline(__always)
  static func normalizedPlaneBackward<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dz: UnsafeMutablePointer<Float>,
    _ q: Int, _ geo: Geometry, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
    _ mean: UnsafePointer<Float>, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _ mayOverrun: Bool, _: G.Type,
    _ sums: UnsafeMutablePointer<Float>, _ normSums: UnsafeMutablePointer<Float>
  ) {
    let (n, c) = q.quotientAndRemainder(dividingBy: geo.channels)
    let o = q * geo.plane
    let b = beta[n * layout.sampleStride + c * layout.channelStride]
    let s = backwardPlane(
      x + o, g, dz + o, geo.plane, Float8(repeating: p1[c] - p2[c]), Float8(repeating: p2[c]),
      Float8(repeating: b), Float8(repeating: scale[c]), Float8(repeating: shift[c]),
      Float8(repeating: mean[c]), mayOverrun, G.self, NormalizedInput.self)
    (sums[3 * q], sums[3 * q + 1], sums[3 * q + 2]) = (s.gxt, s.gx, s.dbeta)
    (normSums[2 * q], normSums[2 * q + 1]) = (s.dz, s.dzCentered)
  }
}

extension ACONKernel {
  /// Whether the fused backward runs channel by channel
  /// (``normalizedBackwardByChannel(_:_:_:_:_:_:_:_:_:_:_:_:_:_:)``): planes of one to sixteen
  /// vectors (4x4 to 16x16 at 16 lanes), where five horizontal sums per plane cost more than the
  /// plane's arithmetic (meta-ACON's beta per sample keeps one: its gradient is per plane). (On
  /// 14x14 planes, `bench-activation --after-batch-norm`, backward 0.39 -> 0.35 ms for
  /// [128, 24, 14, 14] and 0.40 -> 0.35 for [32, 96, 14, 14]; on 28x28 and 56x56 planes this
  /// order ran 10-50% slower than plane by plane.)
  static func runsByChannel(_ geo: Geometry, _ layout: BetaLayout) -> Bool {
    let lanes = WideFloat.scalarCount
    return geo.plane >= lanes && geo.plane <= 16 * lanes
  }

  /// The fused backward of ``runsByChannel(_:_:)`` layers: each worker takes whole channels
  /// and runs through a channel's planes image by image, its five sums kept as vectors across
  /// the planes (folded into Float64 every 128 vectors' worth of images) instead of summed
  /// across lanes per plane.
  /// A channel's sums go to the slots of its plane in the first image, the other images' slots
  /// are zero: every caller only adds a channel's slots up. With beta per sample (meta-ACON)
  /// the beta gradient stays per plane, each in its own slot. A plane that is not whole vectors
  /// ends with a vector shifted back to end with it, its lanes of the vector before masked out:
  /// nothing outside the plane is read or written (the next plane may be another worker's).
  ///
  /// The order of the visits follows ``ChannelVisits/forLayer(channels:plane:)``; every
  /// order adds each sum's terms in the same sequence, so the results do not depend on it.
  static func normalizedBackwardByChannel<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dz: UnsafeMutablePointer<Float>,
    _ geo: Geometry, _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
    _ mean: UnsafePointer<Float>, _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>,
    _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _: G.Type,
    _ sums: UnsafeMutablePointer<Float>, _ normSums: UnsafeMutablePointer<Float>
  ) {
    let (batch, channels, plane) = (geo.batch, geo.channels, geo.plane)
    let lanes = WideFloat.scalarCount
    let betaPerSample = layout.sampleStride != 0
    // About 128 vectors per lane summed in Float between folds, whatever the plane's size.
    let imagesPerFold = max(1, 128 / ((plane + lanes - 1) / lanes))
    let visits = ChannelVisits.forLayer(channels: channels, plane: plane)
    let (all, lastLanes) = (
      WideLaneMask(repeating: -1), ~wideLaneMask(keepingFirst: lanes - plane % lanes)
    )
    // The other images' slots: zero, in one pass (stores one by one, per channel, cost 10-15%).
    (sums + 3 * channels).update(repeating: 0, count: 3 * channels * (batch - 1))
    (normSums + 2 * channels).update(repeating: 0, count: 2 * channels * (batch - 1))
    Parallel.forRanges(channels, minimumChunk: max(1, 16384 / (batch * plane))) { range in
      // Per channel of a block: its five lane sums within the fold, then their Float64 totals.
      let blockSums = ChannelVisits.Sums(visits, lanesPerChannel: 5, totalsPerChannel: 5)
      defer { blockSums.free() }
      let totals = blockSums.totals
      for block in visits.blocks(of: range) {
        blockSums.startBlock(block)
        for fold in stride(from: 0, to: batch, by: imagesPerFold) {
          let foldImages = fold..<min(batch, fold + imagesPerFold)
          blockSums.startFold(block)
          for images in visits.groups(of: foldImages) {
            for c in block {
              let a = blockSums.lanes + 5 * (c - block.lowerBound)
              let (d, p2v) = (WideFloat(repeating: p1[c] - p2[c]), WideFloat(repeating: p2[c]))
              let bdChannel = WideFloat(repeating: beta[c * layout.channelStride]) * d
              let (sv, hv) = (WideFloat(repeating: scale[c]), WideFloat(repeating: shift[c]))
              let mv = WideFloat(repeating: mean[c])
              var (acc1, acc2, acc3, acc4, acc5) = (a[0], a[1], a[2], a[3], a[4])
              for n in images {
                let q = n * channels + c
                let o = q * plane
                let bd =
                  betaPerSample
                  ? WideFloat(repeating: beta[n * layout.sampleStride + c * layout.channelStride])
                    * d
                  : bdChannel
                var planeDbeta = WideFloat(repeating: 0)
                var i = 0
                while i < plane {
                  // The mask is chosen, not computed, in the loop (see ACONKernel.forwardPlane).
                  let last = i + lanes > plane
                  let (at, keep) = last ? (o + plane - lanes, lastLanes) : (o + i, all)
                  let xv = masked(NormalizedInput.read(x + at, sv, hv), keep)
                  let gv = masked(loadWide(g + at), keep)
                  let (dzv, t, slope, dxv) = backwardTerms(xv, gv, d, p2v, bd, G.self)
                  storeWide(last ? select(keep, dzv, loadWide(dz + at)) : dzv, dz + at)
                  let gxv = gv * xv
                  acc1 = acc1.plusProduct(gxv, t)
                  acc2 += gxv
                  planeDbeta = planeDbeta.plusProduct(gv * dxv, dxv * slope)
                  acc4 += dzv
                  acc5 = acc5.plusProduct(dzv, masked(loadWide(x + at) - mv, keep))
                  i += lanes
                }
                if betaPerSample {
                  sums[3 * q + 2] = horizontalSum(planeDbeta)
                } else {
                  acc3 += planeDbeta
                }
              }
              (a[0], a[1], a[2], a[3], a[4]) = (acc1, acc2, acc3, acc4, acc5)
            }
          }
          for j in 0..<(5 * block.count) { totals[j] += LaneSums.reduced(blockSums.lanes[j]) }
        }
        for c in block {
          let t = 5 * (c - block.lowerBound)
          (sums[3 * c], sums[3 * c + 1]) = (Float(totals[t]), Float(totals[t + 1]))
          if !betaPerSample { sums[3 * c + 2] = Float(totals[t + 2]) }
          (normSums[2 * c], normSums[2 * c + 1]) = (Float(totals[t + 3]), Float(totals[t + 4]))
        }
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
          rv.plusProduct(loadWide(xr + $0) - mv, qv).plusProduct(loadWide(gr + $0), kv)
        } scalar: {
          rv[0].plusProduct(xr[$0] - mv[0], qv[0]).plusProduct(gr[$0], kv[0])
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

/// The fused batch norm + ACON with the max pool after it (ShuffleNetV2's stem: 3x3 max pool,
/// stride 2, over 24 channels of 112x112 at 224): each plane is normalised and activated into
/// a buffer of the worker's, a band of rows at a time, and pooled from there, so the activation,
/// four times the pool's output, is never written to memory nor read back; backward, each
/// plane's gradient is scattered from the pooled one into such a buffer and read from there.
///
/// Bytes per input element, against the fused layer and then the pool: forward 4 (the
/// statistics) + 4 + 2 (the pooled output and positions, a quarter of the elements, 4 bytes
/// each) = 10 instead of 12 + 6 = 18; backward 4 + 2 + 4 (x, the pooled gradient and
/// positions, dz) then 12 (dx from dz) = 22 instead of 6 (the pool's) + 24 = 30. What it saves
/// is memory (the activation and its gradient are never stored), not time: on the stem's
/// layer these passes are bound by the sigmoid's and the pool's instructions about as much
/// as by the bytes, and the step runs level with the two ops.
extension ACONKernel {
  /// Whether ``forwardAfterBatchNormThenMaxPool(_:pooled:indices:geometry:pool:scale:shift:p1:p2:beta:layout:gate:)``
  /// serves a layer of this geometry: planes the fused backward visits one at a time (not
  /// ``runsByChannel(_:_:)``), whose sums it then forms exactly as the layer and the pool run
  /// apart would.
  public static func fusesMaxPool(_ geometry: Geometry) -> Bool {
    !runsByChannel(geometry, .perChannel)
  }

  /// `pooled = maxPool(acon(x * scale + shift))` and the pool's `indices` (as
  /// ``PoolingKernel/maxForward(_:_:indices:planes:geometry:)`` writes them), beta per plane.
  /// The same bits as the two kernels one after the other.
  public static func forwardAfterBatchNormThenMaxPool(
    _ x: UnsafePointer<Float>, pooled: UnsafeMutablePointer<Float>,
    indices: UnsafeMutablePointer<Int32>, geometry geo: Geometry, pool: PoolGeometry,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, p1: UnsafePointer<Float>,
    p2: UnsafePointer<Float>, beta: UnsafePointer<Float>, layout: BetaLayout,
    gate: Gate = .sigmoid
  ) {
    precondition(layout.elementStride == 0, "the fused batch norm + ACON takes beta per plane")
    precondition(pool.height * pool.width == geo.plane, "the pool's planes are not the layer's")
    switch gate {
    case .sigmoid:
      normalizedPooledForward(
        x, pooled, indices, geo, pool, scale, shift, p1, p2, beta, layout, SigmoidGate.self)
    case .hardSigmoid:
      normalizedPooledForward(
        x, pooled, indices, geo, pool, scale, shift, p1, p2, beta, layout, HardSigmoidGate.self)
    }
  }

  static func normalizedPooledForward<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ pooled: UnsafeMutablePointer<Float>,
    _ indices: UnsafeMutablePointer<Int32>, _ geo: Geometry, _ pool: PoolGeometry,
    _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>, _ p1: UnsafePointer<Float>,
    _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>, _ layout: BetaLayout, _: G.Type
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    let outPlane = pool.outputHeight * pool.outputWidth
    let lanes = WideFloat.scalarCount
    let rowsPerBand = max(1, 2048 / (pool.width * pool.stride))
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 4096 / plane)) { planes in
      // One activated plane, and a vector after it that its last partial vector may overrun.
      let activated = UnsafeMutablePointer<Float>.allocate(capacity: plane + lanes)
      defer { activated.deallocate() }
      for q in planes {
        let (n, c) = q.quotientAndRemainder(dividingBy: channels)
        let xp = x + q * plane
        let b = beta[n * layout.sampleStride + c * layout.channelStride]
        // Bands of output rows whose input rows (about 8 KB) stay in L1 from their activation
        // to their pooling: whole planes (50 KB at 112x112) went through L2 three times, and
        // the fused pass ran slower than the two kernels apart.
        var ready = 0
        for first in stride(from: 0, to: pool.outputHeight, by: rowsPerBand) {
          let rows = first..<min(pool.outputHeight, first + rowsPerBand)
          let needed = min(
            pool.height, (rows.upperBound - 1) * pool.stride - pool.padding + pool.kernel)
          if needed > ready {
            // As the fused layer's last planes of a run (in one loop with the pool's, LLVM
            // split the sigmoid into scalar pieces and the forward ran 2x slower); the buffer
            // has room for the last vector's overrun.
            let from = ready * pool.width
            normalizeThenActivate(
              xp + from, activated + from, (needed - ready) * pool.width, scale[c], shift[c],
              p1[c] - p2[c], p2[c], b, true, G.self)
            ready = needed
          }
          PoolingKernel.maxPlane(
            activated, pooled + q * outPlane, indices + q * outPlane, pool, KeepsPositions.self,
            outputRows: rows)
        }
      }
    }
  }

  /// The first pass of the fused pullback
  /// (``backwardAfterBatchNorm(_:_:dz:geometry:scale:shift:mean:p1:p2:beta:layout:gate:planeSums:normSums:)``)
  /// for the layer of ``forwardAfterBatchNormThenMaxPool(_:pooled:indices:geometry:pool:scale:shift:p1:p2:beta:layout:gate:)``,
  /// from the gradient at the pool's output and its `indices`: the same `dz` and sums, in the
  /// same bits, as that pass given the pool's input gradient.
  public static func backwardAfterBatchNormThroughMaxPool(
    _ x: UnsafePointer<Float>, pooledGradient: UnsafePointer<Float>,
    indices: UnsafePointer<Int32>, dz: UnsafeMutablePointer<Float>, geometry geo: Geometry,
    pool: PoolGeometry, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, p1: UnsafePointer<Float>, p2: UnsafePointer<Float>,
    beta: UnsafePointer<Float>, layout: BetaLayout, gate: Gate = .sigmoid,
    planeSums: UnsafeMutablePointer<Float>, normSums: UnsafeMutablePointer<Float>
  ) {
    precondition(layout.elementStride == 0, "the fused batch norm + ACON takes beta per plane")
    precondition(fusesMaxPool(geo), "planes of \(geo.plane) floats run channel by channel")
    precondition(pool.height * pool.width == geo.plane, "the pool's planes are not the layer's")
    switch gate {
    case .sigmoid:
      normalizedPooledBackward(
        x, pooledGradient, indices, dz, geo, pool, scale, shift, mean, p1, p2, beta, layout,
        SigmoidGate.self, planeSums, normSums)
    case .hardSigmoid:
      normalizedPooledBackward(
        x, pooledGradient, indices, dz, geo, pool, scale, shift, mean, p1, p2, beta, layout,
        HardSigmoidGate.self, planeSums, normSums)
    }
  }

  static func normalizedPooledBackward<G: GateFunction>(
    _ x: UnsafePointer<Float>, _ gp: UnsafePointer<Float>, _ indices: UnsafePointer<Int32>,
    _ dz: UnsafeMutablePointer<Float>, _ geo: Geometry, _ pool: PoolGeometry,
    _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>, _ mean: UnsafePointer<Float>,
    _ p1: UnsafePointer<Float>, _ p2: UnsafePointer<Float>, _ beta: UnsafePointer<Float>,
    _ layout: BetaLayout, _: G.Type, _ sums: UnsafeMutablePointer<Float>,
    _ normSums: UnsafeMutablePointer<Float>
  ) {
    let (channels, plane) = (geo.channels, geo.plane)
    let outPlane = pool.outputHeight * pool.outputWidth
    // The chunks of normalizedBackwardLoop, so that each plane's last partial vector is read
    // the same way (masked in place or through a padded copy) and the sums come out the same.
    Parallel.forRanges(geo.batch * channels, minimumChunk: max(1, 16384 / plane)) { planes in
      // The plane's gradient, and a vector of zeros after it for a masked last vector's reads.
      let lanes = WideFloat.scalarCount
      let gradient = UnsafeMutablePointer<Float>.allocate(capacity: plane + lanes)
      defer { gradient.deallocate() }
      (gradient + plane).update(repeating: 0, count: lanes)
      for q in planes {
        PoolingKernel.scatterPlane(
          gp + q * outPlane, indices: indices + q * outPlane, gradient, inPlane: plane,
          outPlane: outPlane)
        normalizedPlaneBackward(
          x, gradient, dz, q, geo, scale, shift, mean, p1, p2, beta, layout,
          partialVectorFits(plane: plane, following: planes.upperBound - q - 1), G.self, sums,
          normSums)
      }
    }
  }
}
