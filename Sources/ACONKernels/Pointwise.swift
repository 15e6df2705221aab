/// 1x1 stride-1 convolutions of small images, computed straight on the NCHW planes.
///
/// On a 7x7 or 14x14 image a 1x1 layer's product per image is `[cout, cin] x [cin, 49]`: too
/// small for BLAS, so the general path lays the images side by side (a copy in, a copy out,
/// and in backward a copy of `dy`, of `x` and of the input gradient), and its thin products
/// (24 or 48 rows and inner dimension) still ran at a third to a half of the machine's sgemm
/// rate. Here every product is register-blocked over the planes as they lie:
/// - `y` and `dx`: eight output planes at a time, one vector of positions, eight
///   accumulators; each input vector is loaded once for eight multiply-adds whose weights are
///   broadcast from one pointer (`dx` reads the weight as it is, `y` a transposed copy of it);
///   a plane's last one to four positions (7x7 planes end with one of sixteen lanes) run as
///   vectors across the eight rows instead;
/// - `dw` of layers with few weights (``computesWeightGradient(_:)``): four by four weights at
///   a time, sixteen accumulators summed over the positions of runs of images that stay in
///   cache; wider layers' weight gradient stays one long product over the images side by side
///   (``ConvolutionKernel``).
/// No image is copied and no workspace is used (the transposed weight and the weight
/// gradient's partial sums are a few kilobytes, allocated per call).
public enum PointwiseKernel {
  /// Output planes per block of ``product(_:images:rows:depth:positions:input:inputImageStride:output:outputImageStride:bias:)``.
  static let rowBlock = 8

  /// Whether `g` runs here: 1x1, stride 1, no padding, one group, channel counts that are
  /// multiples of 8 up to 256 (wider layers keep BLAS, whose panels pay off there), and the
  /// images the general path would lay side by side: more than one, of 16 positions or more
  /// (a vector of positions at least; meta-ACON's 1x1 generators on pooled 1x1 inputs stay one
  /// product) and fewer than ``KernelOptions/pointwiseDirectColumns`` (larger ones run one BLAS
  /// product per image, straight from the input, as does a single image). Layers of at most
  /// 32 x 32 weights take images of up to twice that: a BLAS product per image of a 24 x 24
  /// layer on 28x28 images ran at a third of the register blocks' speed (batch 128: forward,
  /// input and weight gradient 3.4 ms against 2.3), where at 128 x 128 it was the faster one.
  public static func applies(_ g: ConvGeometry) -> Bool {
    let positions = g.outHeight * g.outWidth
    let narrow = g.inChannels * g.outChannels <= 32 * 32
    return g.isPointwise && g.groups == 1 && g.batch > 1 && positions >= 16
      && positions < KernelOptions.current.pointwiseDirectColumns * (narrow ? 2 : 1)
      && g.inChannels % rowBlock == 0 && g.outChannels % rowBlock == 0
      && g.inChannels <= 256 && g.outChannels <= 256
  }

  /// `y = conv(x, w) + b`; `x` `[N, cin, P]`, `w` `[cout, cin]`, `y` `[N, cout, P]`.
  public static func forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    precondition(applies(g), "not a small pointwise geometry: \(g)")
    let positions = g.outHeight * g.outWidth
    let (cin, cout) = (g.inChannels, g.outChannels)
    withWeightsByInput(weight, outputs: cout, inputs: cin) { transposed in
      product(
        transposed, images: g.batch, rows: cout, depth: cin, positions: positions, input: x,
        inputImageStride: cin * positions, output: y, outputImageStride: cout * positions,
        bias: bias)
    }
  }

  /// Calls `body` with `weight` (`[outputs, inputs]`) transposed to `[inputs, outputs]`: the
  /// register blocks want, for each input, the weights of all outputs side by side (a few
  /// kilobytes).
  static func withWeightsByInput(
    _ weight: UnsafePointer<Float>, outputs: Int, inputs: Int,
    _ body: (UnsafePointer<Float>) -> Void
  ) {
    let transposed = UnsafeMutablePointer<Float>.allocate(capacity: inputs * outputs)
    defer { transposed.deallocate() }
    for o in 0..<outputs {
      for i in 0..<inputs { transposed[i * outputs + o] = weight[o * inputs + i] }
    }
    body(transposed)
  }

  /// The input gradient, `dx = w^T dy` per image (overwritten).
  public static func inputGradient(
    _ g: ConvGeometry, weight: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    inputGrad dx: UnsafeMutablePointer<Float>
  ) {
    precondition(applies(g), "not a small pointwise geometry: \(g)")
    let positions = g.outHeight * g.outWidth
    let (cin, cout) = (g.inChannels, g.outChannels)
    // w as it is holds, for each output channel (the inner dimension here), the weights of
    // all input channels (the rows) side by side.
    product(
      weight, images: g.batch, rows: cin, depth: cout, positions: positions, input: dy,
      inputImageStride: cout * positions, output: dx, outputImageStride: cin * positions,
      bias: nil)
  }

  /// For every image `n`: `out[n][m][p] = bias[m] + sum over k of a[k][m] in[n][k][p]`, with
  /// `a` `[depth, rows]` (the eight weights of a block, for one `k`, side by side: they are
  /// broadcast from fixed offsets of one pointer); `rows` is a multiple of ``rowBlock``.
  static func product(
    _ weights: UnsafePointer<Float>, images: Int, rows: Int, depth: Int, positions: Int,
    input: UnsafePointer<Float>, inputImageStride: Int,
    output: UnsafeMutablePointer<Float>, outputImageStride: Int, bias: UnsafePointer<Float>?
  ) {
    let lanes = WideFloat.scalarCount
    let blocks = rows / rowBlock
    let inputEnd = input + images * inputImageStride
    let tailMask = wideLaneMask(keepingFirst: positions % lanes)
    // A plane's last one to four positions (7x7: one of sixteen, 14x14: four) run as vectors
    // across the block's eight rows instead of a vector of positions that is mostly padding:
    // per input channel one multiply-add per position, not eight.
    let tail = positions % lanes
    let tailAcrossRows = tail > 0 && tail <= 4
    let vectorEnd = tailAcrossRows ? positions - tail : positions
    // Work items: (image, block of eight output planes), in memory order.
    let items = images * blocks
    let perItem = rowBlock * depth * positions
    Parallel.forRanges(items, minimumChunk: max(1, (1 << 17) / max(1, perItem))) { range in
      for item in range {
        let (n, block) = item.quotientAndRemainder(dividingBy: blocks)
        let m0 = block * rowBlock
        let src = input + n * inputImageStride
        let dst = output + n * outputImageStride + m0 * positions
        let a = weights + m0
        var p = 0
        while p < vectorEnd {
          let partial = positions - p < lanes
          // The last vector of a plane reads past it: into the next plane, or (last plane of
          // the last image) past the input, where it reads lane by lane instead.
          let safe = !partial || src + (depth - 1) * positions + p + lanes <= inputEnd
          var sums = EightRowSums(bias: bias.map { $0 + m0 })
          for k in 0..<depth {
            let row = src + k * positions + p
            sums.accumulate(
              safe ? loadWide(row) : loadWidePartial(row, positions - p), weights: a + k * rows)
          }
          let out = dst + p
          if !partial {
            sums.store(to: out, rowStride: positions)
          } else {
            // A plane whose last vector ends inside this block is stored whole, the floats
            // past it (the next planes' first ones) written back as they are; past the block
            // another worker may be writing, so there the lanes go one by one.
            let left = positions - p
            let spill = lanes - left
            for j in 0..<rowBlock {
              let v = sums.row(j)
              if spill <= (rowBlock - 1 - j) * positions {
                storeWide(v, out + j * positions, keeping: tailMask)
              } else {
                for l in 0..<left { out[j * positions + l] = v[l] }
              }
            }
          }
          p += lanes
        }
        if tailAcrossRows {
          productTailAcrossRows(
            a, rows: rows, depth: depth, input: src + vectorEnd, positions: positions,
            count: tail, output: dst + vectorEnd, bias: bias.map { $0 + m0 })
        }
      }
    }
  }

  /// Positions `0..<count` (1 to 4) of `input`'s planes (`positions` floats apart) for one block
  /// of eight output rows: each position's eight sums are one vector across the rows, the
  /// block's eight weights for an input channel one load.
  @inline(__always)
  static func productTailAcrossRows(
    _ a: UnsafePointer<Float>, rows: Int, depth: Int, input: UnsafePointer<Float>,
    positions: Int, count: Int, output: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?
  ) {
    let start = bias.map { load8($0) } ?? Float8(repeating: 0)
    var (s0, s1, s2, s3) = (start, start, start, start)
    for k in 0..<depth {
      let w = load8(a + k * rows)
      let column = input + k * positions
      s0 = s0.plusProduct(w, Float8(repeating: column[0]))
      if count > 1 { s1 = s1.plusProduct(w, Float8(repeating: column[1])) }
      if count > 2 { s2 = s2.plusProduct(w, Float8(repeating: column[2])) }
      if count > 3 { s3 = s3.plusProduct(w, Float8(repeating: column[3])) }
    }
    for j in 0..<rowBlock {
      let row = output + j * positions
      row[0] = s0[j]
      if count > 1 { row[1] = s1[j] }
      if count > 2 { row[2] = s2[j] }
      if count > 3 { row[3] = s3[j] }
    }
  }

  /// Whether ``weightGradient(_:input:outputGrad:weightGrad:)`` runs `g`'s weight gradient:
  /// layers with at most 48 x 48 weights. The alternative, one long product over the images
  /// side by side, copies `x` and `dy` and leaves BLAS a `cout x cin` result too small to share
  /// between the cores; measured at batch 128 (`acon bench-op --split --best`), the register
  /// blocks took 0.25-0.41 ms against 0.42-0.45 at 24 x 24 channels on 14x14 images, 1.5-1.8
  /// against 1.7-3.6 at 48 x 48 on 14x14, as long at 48 x 48 on 7x7, and twice as long at
  /// 96 x 96 (their passes over the planes grow with the number of 4 x 4 blocks).
  public static func computesWeightGradient(_ g: ConvGeometry) -> Bool {
    applies(g) && g.inChannels * g.outChannels <= 48 * 48
  }

  /// Bytes of `x` and `dy` one pass of ``weightGradient(_:input:outputGrad:weightGrad:)``
  /// reads for a run of images, so that they stay in the core's L2 cache for every block.
  static let chunkBytes = 256 << 10

  /// `dw[o][i] = sum over images n and positions p of dy[n][o][p] x[n][i][p]` (overwritten),
  /// four by four weights at a time: sixteen accumulators over the positions of a run of
  /// images small enough to stay in cache, kept in the worker's scratch from one run to the
  /// next, then summed across lanes. Each weight is computed by one worker, in a fixed order.
  ///
  /// A plane that ends with one or two floats past its whole vectors (7x7: one of sixteen)
  /// would spend a whole vector of multiply-adds per image on them; those positions are first
  /// gathered image by image (``tailsByImage``) and summed sixteen images to a vector.
  public static func weightGradient(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    weightGrad dw: UnsafeMutablePointer<Float>
  ) {
    precondition(applies(g), "not a small pointwise geometry: \(g)")
    let lanes = WideFloat.scalarCount
    let (images, cin, cout) = (g.batch, g.inChannels, g.outChannels)
    let positions = g.outHeight * g.outWidth
    let (xEnd, dyEnd) = (x + images * cin * positions, dy + images * cout * positions)
    let tailMask = wideLaneMask(keepingFirst: positions % lanes)
    let (wholeVectors, tailLanes) = positions.quotientAndRemainder(dividingBy: lanes)
    let (outBlocks, inBlocks) = (cout / 4, cin / 4)
    let chunk = max(1, chunkBytes / (4 * (cin + cout) * positions))
    // A tail of one or two floats (7x7 planes at either width) runs across the images.
    let tailsAcrossImages = tailLanes > 0 && tailLanes <= 2
    let paddedImages = (images + lanes - 1) / lanes * lanes
    func tails(_ planes: UnsafePointer<Float>, channels: Int) -> UnsafeMutablePointer<Float>? {
      guard tailsAcrossImages else { return nil }
      return tailsByImage(
        planes, images: images, channels: channels, positions: positions, tailLanes: tailLanes,
        paddedImages: paddedImages)
    }
    let (dyTails, xTails) = (tails(dy, channels: cout), tails(x, channels: cin))
    defer {
      dyTails?.deallocate()
      xTails?.deallocate()
    }
    Parallel.forRanges(outBlocks * inBlocks, minimumChunk: 1) { range in
      // Sixteen vectors of partial sums per block.
      let scratch = UnsafeMutablePointer<WideFloat>.allocate(capacity: 16 * range.count)
      scratch.initialize(repeating: WideFloat(repeating: 0), count: 16 * range.count)
      defer { scratch.deallocate() }
      var n0 = 0
      while n0 < images {
        let n1 = min(images, n0 + chunk)
        for item in range {
          let (ob, ib) = item.quotientAndRemainder(dividingBy: inBlocks)
          let (o0, i0) = (4 * ob, 4 * ib)
          let sums = scratch + 16 * (item - range.lowerBound)
          var block = BlockSums(loading: sums)
          for n in n0..<n1 {
            // Whole vectors first, two pointers walking the first planes (the other three of
            // each four at fixed distances: eight base pointers did not fit the registers).
            var gq = dy + (n * cout + o0) * positions
            var xq = x + (n * cin + i0) * positions
            for _ in 0..<wholeVectors {
              block.accumulate(rows: gq, columns: xq, stride: positions)
              gq += lanes
              xq += lanes
            }
            if tailLanes > 0 && !tailsAcrossImages {
              // A partial vector's lanes past the plane read as zero (even a NaN there adds
              // nothing); lane by lane where a vector would cross the end of the buffer.
              func read(_ q: UnsafePointer<Float>, _ end: UnsafePointer<Float>) -> WideFloat {
                q + lanes <= end ? masked(loadWide(q), tailMask) : loadWidePartial(q, tailLanes)
              }
              block.accumulate(
                read(gq, dyEnd), read(gq + positions, dyEnd), read(gq + 2 * positions, dyEnd),
                read(gq + 3 * positions, dyEnd), read(xq, xEnd), read(xq + positions, xEnd),
                read(xq + 2 * positions, xEnd), read(xq + 3 * positions, xEnd))
            }
          }
          block.store(to: sums)
        }
        n0 = n1
      }
      for item in range {
        let (ob, ib) = item.quotientAndRemainder(dividingBy: inBlocks)
        let sums = scratch + 16 * (item - range.lowerBound)
        if let dyTails, let xTails {
          var block = BlockSums(loading: sums)
          for t in 0..<tailLanes {
            let gq = dyTails + (t * cout + 4 * ob) * paddedImages
            let xq = xTails + (t * cin + 4 * ib) * paddedImages
            for n in stride(from: 0, to: paddedImages, by: lanes) {
              block.accumulate(rows: gq + n, columns: xq + n, stride: paddedImages)
            }
          }
          block.store(to: sums)
        }
        for r in 0..<4 {
          let row = dw + (4 * ob + r) * cin + 4 * ib
          for c in 0..<4 { row[c] = horizontalSum(sums[4 * r + c]) }
        }
      }
    }
  }

  /// The last `tailLanes` floats of every plane of `[images, channels, positions]`, as
  /// `[tailLanes, channels, paddedImages]`: each position and channel's floats of all images
  /// side by side, zero past the last image (a buffer the caller frees).
  static func tailsByImage(
    _ planes: UnsafePointer<Float>, images: Int, channels: Int, positions: Int, tailLanes: Int,
    paddedImages: Int
  ) -> UnsafeMutablePointer<Float> {
    let tails = UnsafeMutablePointer<Float>.allocate(capacity: tailLanes * channels * paddedImages)
    let first = positions - tailLanes
    Parallel.forRanges(tailLanes * channels, minimumChunk: max(1, 4096 / paddedImages)) { rows in
      for row in rows {
        let (t, c) = row.quotientAndRemainder(dividingBy: channels)
        let dst = tails + row * paddedImages
        let src = planes + c * positions + first + t
        for n in 0..<images { dst[n] = src[n * channels * positions] }
        (dst + images).update(repeating: 0, count: paddedImages - images)
      }
    }
    return tails
  }

  /// The first `lanes` floats at `p` (fewer than a vector), the rest zero, read one by one.
  @inline(__always)
  static func loadWidePartial(_ p: UnsafePointer<Float>, _ lanes: Int) -> WideFloat {
    var v = WideFloat(repeating: 0)
    for l in 0..<min(lanes, WideFloat.scalarCount) { v[l] = p[l] }
    return v
  }
}

/// Eight output rows over one vector of positions, in registers: `row(j) = bias[j] + sum over k
/// of w_k[j] v_k`, each input vector `v_k` loaded once for eight multiply-adds whose weights are
/// broadcast from eight consecutive floats (``PointwiseKernel``'s products, ``StemKernel``).
struct EightRowSums {
  var r0, r1, r2, r3, r4, r5, r6, r7: WideFloat

  /// Rows starting at `bias[0..<8]` (zero without a bias).
  @inline(__always)
  init(bias: UnsafePointer<Float>?) {
    r0 = WideFloat(repeating: bias?[0] ?? 0)
    r1 = WideFloat(repeating: bias?[1] ?? 0)
    r2 = WideFloat(repeating: bias?[2] ?? 0)
    r3 = WideFloat(repeating: bias?[3] ?? 0)
    r4 = WideFloat(repeating: bias?[4] ?? 0)
    r5 = WideFloat(repeating: bias?[5] ?? 0)
    r6 = WideFloat(repeating: bias?[6] ?? 0)
    r7 = WideFloat(repeating: bias?[7] ?? 0)
  }

  /// Adds `v` times each of the eight weights at `w`.
  @inline(__always)
  mutating func accumulate(_ v: WideFloat, weights w: UnsafePointer<Float>) {
    r0 = r0.plusProduct(v, WideFloat(repeating: w[0]))
    r1 = r1.plusProduct(v, WideFloat(repeating: w[1]))
    r2 = r2.plusProduct(v, WideFloat(repeating: w[2]))
    r3 = r3.plusProduct(v, WideFloat(repeating: w[3]))
    r4 = r4.plusProduct(v, WideFloat(repeating: w[4]))
    r5 = r5.plusProduct(v, WideFloat(repeating: w[5]))
    r6 = r6.plusProduct(v, WideFloat(repeating: w[6]))
    r7 = r7.plusProduct(v, WideFloat(repeating: w[7]))
  }

  /// Stores the eight rows whole, `rowStride` floats apart from `out`.
  @inline(__always)
  func store(to out: UnsafeMutablePointer<Float>, rowStride: Int) {
    storeWide(r0, out)
    storeWide(r1, out + rowStride)
    storeWide(r2, out + 2 * rowStride)
    storeWide(r3, out + 3 * rowStride)
    storeWide(r4, out + 4 * rowStride)
    storeWide(r5, out + 5 * rowStride)
    storeWide(r6, out + 6 * rowStride)
    storeWide(r7, out + 7 * rowStride)
  }

  /// Row `j` (0 to 7).
  @inline(__always)
  func row(_ j: Int) -> WideFloat {
    switch j {
    case 0: return r0
    case 1: return r1
    case 2: return r2
    case 3: return r3
    case 4: return r4
    case 5: return r5
    case 6: return r6
    default: return r7
    }
  }
}
