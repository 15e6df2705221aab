/// Depthwise convolution (`groups == inChannels == outChannels`): one `kh x kw` filter per
/// channel, computed directly with SIMD8 over the output width.
///
/// A depthwise layer does 9 multiply-adds per output for a 3x3 filter, so it is bound by memory,
/// not arithmetic; unfolding it for a matrix product would multiply the bytes moved by 9. Each
/// `(image, channel)` plane is first copied into a small zero-padded buffer that stays in L1/L2,
/// with its columns split by phase (column mod stride): every tap of every output vector then
/// reads 8 contiguous floats, whatever the stride, dilation or padding, and no bounds are
/// checked in the inner loop.
///
/// The 3x3 layers with padding 1 of small planes (stride 1 up to 32x32, stride 2 with outputs
/// up to 16x16) skip the copy and read each plane as one flat row of whole vectors with lane
/// masks for the padding (`DepthwiseFlat.swift`, `DepthwiseFlatStride2.swift`).
public enum DepthwiseKernel {
  /// Where a zero-padded, phase-split plane keeps its elements: logical column `c` of row `r`
  /// lives at `r * rowStride + (c % stride) * phaseWidth + c / stride`.
  struct PaddedPlane {
    let rows: Int
    let columns: Int
    let stride: Int
    let phaseWidth: Int
    var rowStride: Int { stride * phaseWidth }
    var count: Int { rows * rowStride }

    /// A plane of `rows x columns` read by `outWidth`-wide vectors at stride `stride` through
    /// `kernelWidth` taps `dilation` apart; every vector read (8 floats) stays inside the plane.
    init(rows: Int, columns: Int, stride: Int, outWidth: Int, kernelWidth: Int, dilation: Int) {
      self.rows = rows
      self.columns = columns
      self.stride = stride
      let perPhase = (columns + stride - 1) / stride
      let reach = (kernelWidth - 1) * dilation / stride + (outWidth + 7) / 8 * 8
      // Stride 2 fills and reads a phase eight floats at a time (see `fill`, `read`): the last
      // vector may run up to eight floats past the phase's data.
      self.phaseWidth = max(perPhase + (stride == 2 ? 8 : 0), reach)
    }

    @inline(__always) func column(_ c: Int) -> Int { (c % stride) * phaseWidth + c / stride }

    /// The first logical column at or after `c` whose phase (column mod stride) is `q`.
    @inline(__always) func firstColumn(atLeast c: Int, phase q: Int) -> Int {
      c + ((q - c % stride) % stride + stride) % stride
    }

    /// Copies logical columns `c0..<c1` of the row at `row` to `dst[0..<c1 - c0]`, phase by
    /// phase (no division per element).
    /// `mayOverrun` floats past `dst[c1 - c0]` may be overwritten (they are written later).
    @inline(__always) func read(
      row: UnsafePointer<Float>, columns c0: Int, _ c1: Int, into dst: UnsafeMutablePointer<Float>,
      mayOverrun: Int = 0
    ) {
      if stride == 1 {
        dst.update(from: row + c0, count: c1 - c0)
        return
      }
      if stride == 2 {
        // Sixteen logical columns from eight of each phase, interleaved in registers.
        let n = c1 - c0
        let evenSource = row + (c0 % 2) * phaseWidth + c0 / 2
        let oddSource = row + ((c0 + 1) % 2) * phaseWidth + (c0 + 1) / 2
        var k = 0
        while k < n {
          let v = interleaved(load8(evenSource + k / 2), load8(oddSource + k / 2))
          if k + 16 <= n + mayOverrun {
            UnsafeMutableRawPointer(dst + k).storeBytes(of: v, as: SIMD16<Float>.self)
          } else {
            for l in 0..<(n - k) { dst[k + l] = v[l] }
          }
          k += 16
        }
        return
      }
      for q in 0..<stride {
        var c = firstColumn(atLeast: c0, phase: q)
        var k = c / stride
        let sq = row + q * phaseWidth
        while c < c1 {
          dst[c - c0] = sq[k]
          c += stride
          k += 1
        }
      }
    }

    /// Writes `src` (`srcRows x srcColumns`) so that logical `(r, c)` holds
    /// `src[r - rowShift][c - columnShift]`; positions outside `src` are left as they are (zero:
    /// they are the same positions for every plane, so the buffer is zeroed once).
    ///
    /// Rows are filled in increasing order, eight floats at a time: a row's last vector may write
    /// zeros up to eight floats past its data (padding, or the next row's data, written after),
    /// so `buf` must have `count + 8` floats (``scratch(_:)`` gives them). `sourceEnd` is the
    /// end of `src`'s allocation: vector loads may read past a row's end but never past it.
    func fill(
      _ buf: UnsafeMutablePointer<Float>, from src: UnsafePointer<Float>, srcRows: Int,
      srcColumns: Int, rowShift: Int, columnShift: Int, sourceEnd: UnsafePointer<Float>
    ) {
      let r0 = max(0, rowShift)
      let r1 = min(rows, srcRows + rowShift)
      let c0 = max(0, columnShift)
      let c1 = min(columns, srcColumns + columnShift)
      if r0 >= r1 || c0 >= c1 { return }
      // Stride 2 with whole source rows: sixteen source floats split into their two phases in
      // registers (a division-free scalar loop cost more than the convolution itself).
      let evenPhase = (c0 % 2) * phaseWidth + c0 / 2
      let oddPhase = ((c0 + 1) % 2) * phaseWidth + (c0 + 1) / 2
      let wholeRows =
        stride == 2 && columnShift >= 0 && c1 - c0 == srcColumns
        && (c0 + 1) / 2 + (srcColumns + 15) / 16 * 8 <= phaseWidth
      for r in r0..<r1 {
        let s = src + (r - rowShift) * srcColumns - columnShift
        let d = buf + r * rowStride
        if stride == 1 {
          // Rows are short (tens of floats): an inline vector copy beats a memmove call.
          let (dst, from, n) = (d + c0, s + c0, c1 - c0)
          var k = 0
          while k < n {
            store8(loadRow8(from + k, lanes: n - k, end: sourceEnd), dst + k)
            k += 8
          }
        } else if wholeRows {
          let from = s + c0
          var k = 0
          while k < srcColumns {
            let left = srcColumns - k
            var (even, odd): (Float8, Float8)
            if from + k + 16 <= sourceEnd {
              (even, odd) = loadDeinterleaved(from + k)
            } else {
              (even, odd) = (Float8(repeating: 0), Float8(repeating: 0))
              for l in 0..<min(8, (left + 1) / 2) { even[l] = from[k + 2 * l] }
              for l in 0..<min(8, left / 2) { odd[l] = from[k + 2 * l + 1] }
            }
            if left < 16 {
              even = firstLanes(even, (left + 1) / 2)
              odd = firstLanes(odd, left / 2)
            }
            store8(even, d + evenPhase + k / 2)
            store8(odd, d + oddPhase + k / 2)
            k += 16
          }
        } else {
          // Phase by phase, so that no element pays for a division.
          for q in 0..<stride {
            var c = firstColumn(atLeast: c0, phase: q)
            var k = c / stride
            let dq = d + q * phaseWidth
            while c < c1 {
              dq[k] = s[c]
              c += stride
              k += 1
            }
          }
        }
      }
    }
  }

  /// The forward layout: the input plane padded by `padding` on every side.
  static func inputPlane(_ g: ConvGeometry) -> PaddedPlane {
    PaddedPlane(
      rows: g.height + 2 * g.padding, columns: g.width + 2 * g.padding, stride: g.stride,
      outWidth: g.outWidth, kernelWidth: g.kernelWidth, dilation: g.dilation)
  }

  /// Zeroed scratch for one worker, with the eight floats past `count` that a fill's last
  /// vector may write.
  static func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: count + 8)
    p.update(repeating: 0, count: count + 8)
    return p
  }

  /// The `lanes` floats at `p` (at most 8; more means 8) and zeros: one vector load and a blend
  /// when eight floats lie before `end` (the rest of a short row reads the next row's floats,
  /// which are cleared), lane by lane otherwise.
  @inline(__always)
  static func loadRow8(_ p: UnsafePointer<Float>, lanes: Int, end: UnsafePointer<Float>) -> Float8 {
    if lanes >= 8 { return load8(p) }
    if p + 8 <= end { return firstLanes(load8(p), lanes) }
    return load8(p, lanes: lanes)
  }

  /// Stores the first `lanes` of `v` (at most 8), or all eight when the floats past them may be
  /// overwritten (`mayOverrun`: they belong to this plane and are written after).
  @inline(__always)
  static func storeRow8(
    _ v: Float8, _ p: UnsafeMutablePointer<Float>, lanes: Int, mayOverrun: Bool
  ) {
    if lanes >= 8 || mayOverrun { store8(v, p) } else { store8(v, p, lanes: lanes) }
  }

  /// `y = depthwise(x, w) + b`; `x` `[N, C, H, W]`, `w` `[C, 1, kh, kw]`, `y` `[N, C, OH, OW]`.
  public static func forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    precondition(g.isDepthwise, "not a depthwise geometry: \(g)")
    if runsFlat(g) {
      flatForward(g, input: x, weight: weight, bias: bias, output: y)
      return
    }
    if runsFlatStride2(g) {
      flatStride2Forward(g, input: x, weight: weight, bias: bias, output: y)
      return
    }
    let layout = inputPlane(g)
    let channels = g.inChannels
    let (plane, outPlane) = (g.height * g.width, g.outHeight * g.outWidth)
    let taps = g.kernelHeight * g.kernelWidth
    let xEnd = x + g.batch * channels * plane
    Parallel.forRanges(g.batch * channels, minimumChunk: max(1, 8192 / max(1, outPlane))) {
      range in
      let buf = scratch(layout.count)
      defer { buf.deallocate() }
      for item in range {
        let c = item % channels
        layout.fill(
          buf, from: x + item * plane, srcRows: g.height, srcColumns: g.width,
          rowShift: g.padding, columnShift: g.padding, sourceEnd: xEnd)
        correlate(
          buf, layout: layout, weights: weight + c * taps, bias: bias?[c] ?? 0,
          kernelHeight: g.kernelHeight, kernelWidth: g.kernelWidth, stride: g.stride,
          dilation: g.dilation, output: y + item * outPlane, outHeight: g.outHeight,
          outWidth: g.outWidth)
      }
    }
  }

  /// Gradients of ``forward(_:input:weight:bias:output:)`` with respect to the input and the
  /// weight (each overwritten when non-nil): a pass over x and dy for the weight, then a pass over
  /// dy that writes dx (one fused loop measured slower, 19 ms against 12 ms at 32x64x56x56).
  public static func backward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?
  ) {
    precondition(g.isDepthwise, "not a depthwise geometry: \(g)")
    if dx == nil && dw == nil { return }
    if runsFlat(g) {
      flatBackward(g, input: x, weight: weight, outputGrad: dy, inputGrad: dx, weightGrad: dw)
      return
    }
    if runsFlatStride2(g) {
      flatStride2Backward(
        g, input: x, weight: weight, outputGrad: dy, inputGrad: dx, weightGrad: dw)
      return
    }
    var dx = dx
    if let inputGrad = dx, runsFlatStride2InputGradient(g) {
      flatStride2Backward(
        g, input: x, weight: weight, outputGrad: dy, inputGrad: inputGrad, weightGrad: nil)
      if dw == nil { return }
      dx = nil
    }
    let channels = g.inChannels
    let (kh, kw, d) = (g.kernelHeight, g.kernelWidth, g.dilation)
    let taps = kh * kw
    let (plane, outPlane) = (g.height * g.width, g.outHeight * g.outWidth)
    let xLayout = inputPlane(g)
    // Stride 1: dx is dy, padded by the kernel's reach, correlated with the flipped filter.
    // Stride 2 (no dilation): each input column phase gathers from a padded copy of dy.
    // Other strides: dy is scattered into a padded buffer in the input's layout.
    let gatherInput = g.stride == 1
    let gatherPhases = g.stride == 2 && d == 1
    let dyLayout =
      gatherPhases
      ? stride2GradientPlane(g)
      : PaddedPlane(
        rows: g.height + (kh - 1) * d, columns: g.width + (kw - 1) * d, stride: 1,
        outWidth: g.width, kernelWidth: kw, dilation: d)
    // Planes are split into contiguous runs of (image, channel), read in memory order; each
    // worker sums its weight gradients privately, and the partial sums are added at the end.
    let items = g.batch * channels
    let (xEnd, dyEnd) = (x + items * plane, dy + items * outPlane)
    let chunks = max(1, min(Parallel.workers, items / max(1, 2048 / max(1, outPlane))))
    let partial = UnsafeMutablePointer<Double>.allocate(capacity: chunks * channels * taps)
    partial.update(repeating: 0, count: chunks * channels * taps)
    let flipped = flippedFilters(weight, channels: channels, taps: taps)
    defer {
      partial.deallocate()
      flipped.deallocate()
    }
    Parallel.forEach(chunks) { chunk in
      let xbuf = dw != nil ? scratch(xLayout.count) : nil
      let dbuf =
        dx != nil ? scratch(gatherInput || gatherPhases ? dyLayout.count : xLayout.count) : nil
      defer {
        xbuf?.deallocate()
        dbuf?.deallocate()
      }
      let sums = partial + chunk * channels * taps
      let mine = (items * chunk / chunks)..<(items * (chunk + 1) / chunks)
      if let xbuf {
        for item in mine {
          xLayout.fill(
            xbuf, from: x + item * plane, srcRows: g.height, srcColumns: g.width,
            rowShift: g.padding, columnShift: g.padding, sourceEnd: xEnd)
          accumulateWeightGradient(
            xbuf, layout: xLayout, geometry: g, dy: dy + item * outPlane, dyEnd: dyEnd,
            sums: sums + (item % channels) * taps)
        }
      }
      for item in mine {
        let c = item % channels
        let dyp = dy + item * outPlane
        if let dbuf, let dx {
          if gatherInput {
            dyLayout.fill(
              dbuf, from: dyp, srcRows: g.outHeight, srcColumns: g.outWidth,
              rowShift: (kh - 1) * d - g.padding, columnShift: (kw - 1) * d - g.padding,
              sourceEnd: dyEnd)
            correlate(
              dbuf, layout: dyLayout, weights: flipped + c * taps, bias: 0, kernelHeight: kh,
              kernelWidth: kw, stride: 1, dilation: d, output: dx + item * plane,
              outHeight: g.height, outWidth: g.width)
          } else if gatherPhases {
            let reach = (kh - 1) / 2
            dyLayout.fill(
              dbuf, from: dyp, srcRows: g.outHeight, srcColumns: g.outWidth, rowShift: reach,
              columnShift: reach, sourceEnd: dyEnd)
            gatherInputGradientStride2(
              dbuf, layout: dyLayout, weights: weight + c * taps, geometry: g,
              dx: dx + item * plane)
          } else {
            scatterInputGradient(
              dyp, dyEnd: dyEnd, weights: weight + c * taps, geometry: g, layout: xLayout,
              buffer: dbuf, dx: dx + item * plane)
          }
        }
      }
    }
    if let dw {
      for i in 0..<(channels * taps) {
        var total = 0.0
        for chunk in 0..<chunks { total += partial[chunk * channels * taps + i] }
        dw[i] = Float(total)
      }
    }
  }

  /// `out[oy][ox] = bias + sum over taps of w[i][j] * buf[oy * s + i * d][ox * s + j * d]`.
  @inline(__always)
  static func correlate(
    _ buf: UnsafePointer<Float>, layout: PaddedPlane, weights w: UnsafePointer<Float>,
    bias: Float, kernelHeight kh: Int, kernelWidth kw: Int, stride s: Int, dilation d: Int,
    output out: UnsafeMutablePointer<Float>, outHeight: Int, outWidth: Int
  ) {
    let rs = layout.rowStride
    let b = Float8(repeating: bias)
    // Rows are written in order, so a short row's last vector may spill into the next row's
    // start (written after) as long as it stays inside this plane.
    let outPlane = outHeight * outWidth
    if kh == 3 && kw == 3 {
      // The common case with the nine weights and three column offsets held in registers.
      let (o0, o1, o2) = (layout.column(0), layout.column(d), layout.column(2 * d))
      let w0 = Float8(repeating: w[0])
      let w1 = Float8(repeating: w[1])
      let w2 = Float8(repeating: w[2])
      let w3 = Float8(repeating: w[3])
      let w4 = Float8(repeating: w[4])
      let w5 = Float8(repeating: w[5])
      let w6 = Float8(repeating: w[6])
      let w7 = Float8(repeating: w[7])
      let w8 = Float8(repeating: w[8])
      for oy in 0..<outHeight {
        let r0 = buf + oy * s * rs
        let r1 = r0 + d * rs
        let r2 = r1 + d * rs
        let dst = out + oy * outWidth
        var ox = 0
        while ox < outWidth {
          // Three partial sums, one per filter row: three short dependency chains instead of
          // one of nine fused multiply-adds.
          var a0 = b.plusProduct(load8(r0 + o0 + ox), w0)
          var a1 = load8(r1 + o0 + ox) * w3
          var a2 = load8(r2 + o0 + ox) * w6
          a0 = a0.plusProduct(load8(r0 + o1 + ox), w1)
          a1 = a1.plusProduct(load8(r1 + o1 + ox), w4)
          a2 = a2.plusProduct(load8(r2 + o1 + ox), w7)
          a0 = a0.plusProduct(load8(r0 + o2 + ox), w2)
          a1 = a1.plusProduct(load8(r1 + o2 + ox), w5)
          a2 = a2.plusProduct(load8(r2 + o2 + ox), w8)
          storeRow8(
            a0 + a1 + a2, dst + ox, lanes: outWidth - ox,
            mayOverrun: (oy * outWidth + ox + 8) <= outPlane)
          ox += 8
        }
      }
      return
    }
    // Any other filter size: taps in a loop, weights broadcast from memory.
    withUnsafeTemporaryAllocation(of: Int.self, capacity: kw) { offsets in
      for j in 0..<kw { offsets[j] = layout.column(j * d) }
      for oy in 0..<outHeight {
        let row = buf + oy * s * rs
        let dst = out + oy * outWidth
        var ox = 0
        while ox < outWidth {
          var acc = b
          for i in 0..<kh {
            let r = row + i * d * rs + ox
            for j in 0..<kw {
              acc = acc.plusProduct(load8(r + offsets[j]), Float8(repeating: w[i * kw + j]))
            }
          }
          storeRow8(
            acc, dst + ox, lanes: outWidth - ox, mayOverrun: (oy * outWidth + ox + 8) <= outPlane)
          ox += 8
        }
      }
    }
  }

  /// `sums[i * kw + j] += sum over outputs of dy[oy][ox] * xbuf[oy * s + i * d][ox * s + j * d]`.
  @inline(__always)
  static func accumulateWeightGradient(
    _ buf: UnsafePointer<Float>, layout: PaddedPlane, geometry g: ConvGeometry,
    dy: UnsafePointer<Float>, dyEnd: UnsafePointer<Float>, sums: UnsafeMutablePointer<Double>
  ) {
    let (kh, kw, s, d) = (g.kernelHeight, g.kernelWidth, g.stride, g.dilation)
    let (oh, ow) = (g.outHeight, g.outWidth)
    let rs = layout.rowStride
    if kh == 3 && kw == 3 {
      let (o0, o1, o2) = (layout.column(0), layout.column(d), layout.column(2 * d))
      var a0 = Float8(repeating: 0)
      var a1 = a0
      var a2 = a0
      var a3 = a0
      var a4 = a0
      var a5 = a0
      var a6 = a0
      var a7 = a0
      var a8 = a0
      for oy in 0..<oh {
        let r0 = buf + oy * s * rs
        let r1 = r0 + d * rs
        let r2 = r1 + d * rs
        let gy = dy + oy * ow
        var ox = 0
        while ox < ow {
          // Lanes past the row's end load as zero, so they add nothing.
          let gv = loadRow8(gy + ox, lanes: ow - ox, end: dyEnd)
          a0 = a0.plusProduct(load8(r0 + o0 + ox), gv)
          a1 = a1.plusProduct(load8(r0 + o1 + ox), gv)
          a2 = a2.plusProduct(load8(r0 + o2 + ox), gv)
          a3 = a3.plusProduct(load8(r1 + o0 + ox), gv)
          a4 = a4.plusProduct(load8(r1 + o1 + ox), gv)
          a5 = a5.plusProduct(load8(r1 + o2 + ox), gv)
          a6 = a6.plusProduct(load8(r2 + o0 + ox), gv)
          a7 = a7.plusProduct(load8(r2 + o1 + ox), gv)
          a8 = a8.plusProduct(load8(r2 + o2 + ox), gv)
          ox += 8
        }
      }
      sums[0] += Double(horizontalSum(a0))
      sums[1] += Double(horizontalSum(a1))
      sums[2] += Double(horizontalSum(a2))
      sums[3] += Double(horizontalSum(a3))
      sums[4] += Double(horizontalSum(a4))
      sums[5] += Double(horizontalSum(a5))
      sums[6] += Double(horizontalSum(a6))
      sums[7] += Double(horizontalSum(a7))
      sums[8] += Double(horizontalSum(a8))
      return
    }
    for i in 0..<kh {
      for j in 0..<kw {
        let offset = i * d * rs + layout.column(j * d)
        var acc = Float8(repeating: 0)
        for oy in 0..<oh {
          let r = buf + oy * s * rs + offset
          let gy = dy + oy * ow
          var ox = 0
          while ox < ow {
            acc = acc.plusProduct(load8(r + ox), loadRow8(gy + ox, lanes: ow - ox, end: dyEnd))
            ox += 8
          }
        }
        sums[i * kw + j] += Double(horizontalSum(acc))
      }
    }
  }

  /// The padded copy of dy that ``gatherInputGradientStride2(_:layout:weights:geometry:dx:)``
  /// reads: `(kh - 1) / 2` zero rows and columns before dy, and after it enough zeros (and
  /// slack for whole vectors) that every row and column it reads lies inside.
  static func stride2GradientPlane(_ g: ConvGeometry) -> PaddedPlane {
    let reach = (g.kernelHeight - 1) / 2
    let rows = max(g.outHeight, (g.height - 1 + g.padding) / 2 + 1) + 2 * reach
    let halfWidth = (g.width + 1) / 2
    let columns = max(g.outWidth, halfWidth + (g.padding + 1) / 2) + 2 * reach
    return PaddedPlane(
      rows: rows, columns: columns, stride: 1,
      outWidth: (halfWidth + 7) / 8 * 8 + (g.padding + 1) / 2 + reach + 8, kernelWidth: 1,
      dilation: 1)
  }

  /// The input gradient of a stride-2 layer without dilation, gathered: padded input row
  /// `Y = iy + padding` takes the filter rows `i` with `i ≡ Y (mod 2)` from output row
  /// `(Y - i) / 2`, and likewise for columns, so each of the four (row, column) phases of dx is
  /// a small correlation of dy. Eight columns of each phase are interleaved into sixteen of dx;
  /// nothing is scattered, and no buffer is cleared per plane.
  static func gatherInputGradientStride2(
    _ buf: UnsafePointer<Float>, layout: PaddedPlane, weights w: UnsafePointer<Float>,
    geometry g: ConvGeometry, dx: UnsafeMutablePointer<Float>
  ) {
    let (kh, kw, p) = (g.kernelHeight, g.kernelWidth, g.padding)
    let (height, width) = (g.height, g.width)
    let reach = (kh - 1) / 2
    let rs = layout.rowStride
    // dx column 2m sits at padded column 2m + p: phase p % 2, index m + p / 2; column 2m + 1
    // at phase (p + 1) % 2, index m + (p + 1) / 2.
    let (evenPhase, evenBase) = (p % 2, p / 2 + reach)
    let (oddPhase, oddBase) = ((p + 1) % 2, (p + 1) / 2 + reach)
    let plane = height * width
    for iy in 0..<height {
      let y = iy + p
      let rowPhase = y % 2
      let top = buf + (y / 2 + reach) * rs
      let dst = dx + iy * width
      var m = 0
      while 2 * m < width {
        var even = Float8(repeating: 0)
        var odd = Float8(repeating: 0)
        var i = rowPhase
        while i < kh {
          let row = top - (i - rowPhase) / 2 * rs + m
          var j = evenPhase
          while j < kw {
            even = even.plusProduct(
              load8(row + evenBase - (j - evenPhase) / 2), Float8(repeating: w[i * kw + j]))
            j += 2
          }
          j = oddPhase
          while j < kw {
            odd = odd.plusProduct(
              load8(row + oddBase - (j - oddPhase) / 2), Float8(repeating: w[i * kw + j]))
            j += 2
          }
          i += 2
        }
        let v = interleaved(even, odd)
        let k = 2 * m
        if iy * width + k + 16 <= plane {
          // Past the row's end: the rows after it in this plane, written after.
          UnsafeMutableRawPointer(dst + k).storeBytes(of: v, as: SIMD16<Float>.self)
        } else {
          for l in 0..<min(16, width - k) { dst[k + l] = v[l] }
        }
        m += 8
      }
    }
  }

  /// For strides above 1: adds `w[i][j] * dy[oy][ox]` at padded input `(oy*s + i*d, ox*s + j*d)`
  /// of `buffer` (in `layout`), tap by tap so that consecutive vector updates never overlap, then
  /// copies the unpadded part to `dx`.
  static func scatterInputGradient(
    _ dy: UnsafePointer<Float>, dyEnd: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
    geometry g: ConvGeometry,
    layout: PaddedPlane, buffer: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>
  ) {
    let (kh, kw, s, d) = (g.kernelHeight, g.kernelWidth, g.stride, g.dilation)
    let (oh, ow) = (g.outHeight, g.outWidth)
    let rs = layout.rowStride
    buffer.update(repeating: 0, count: layout.count)
    for i in 0..<kh {
      for j in 0..<kw {
        let wv = Float8(repeating: w[i * kw + j])
        let offset = i * d * rs + layout.column(j * d)
        for oy in 0..<oh {
          let r = buffer + oy * s * rs + offset
          let gy = dy + oy * ow
          var ox = 0
          while ox < ow {
            // Lanes past the row's end add zero (into slack the layout reserves).
            let gv = loadRow8(gy + ox, lanes: ow - ox, end: dyEnd)
            store8(load8(r + ox).plusProduct(gv, wv), r + ox)
            ox += 8
          }
        }
      }
    }
    let p = g.padding
    for iy in 0..<g.height {
      // Rows in order: all but the last may overrun into the rows after them.
      layout.read(
        row: buffer + (iy + p) * rs, columns: p, p + g.width, into: dx + iy * g.width,
        mayOverrun: (g.height - 1 - iy) * g.width)
    }
  }
}

extension DepthwiseKernel {
  /// Each channel's filter of `taps` weights in reverse order (the input gradient of a stride-1
  /// layer correlates `dy` with it); the caller deallocates it.
  static func flippedFilters(
    _ weight: UnsafePointer<Float>, channels: Int, taps: Int
  ) -> UnsafeMutablePointer<Float> {
    let flipped = UnsafeMutablePointer<Float>.allocate(capacity: channels * taps)
    for c in 0..<channels {
      for t in 0..<taps { flipped[c * taps + t] = weight[c * taps + taps - 1 - t] }
    }
    return flipped
  }
}
