/// 1x1 stride-1 convolutions of small images, computed straight on the NCHW planes.
///
/// On a 7x7 or 14x14 image a 1x1 layer's product per image is `[cout, cin] x [cin, 49]`: too
/// small for BLAS, so the general path lays the images side by side (a copy in, a copy out,
/// and in backward a copy of `dy`, of `x` and of the input gradient), and its thin products
/// (24 or 48 rows and inner dimension) still ran at a third to a half of the machine's sgemm
/// rate. Here every product is register-blocked over the planes as they lie:
/// - `y` (and `dx`, with the weight transposed): eight output planes at a time, one vector of
///   positions, eight accumulators; each input vector is loaded once for eight multiply-adds
///   whose weights are broadcast from memory;
/// Nothing is copied and no workspace is used. The weight gradient stays on the general path
/// (see ``inputGradient(_:weight:outputGrad:inputGrad:)``).
public enum PointwiseKernel {
  /// Output planes per block of ``product(_:images:rows:depth:positions:rowStride:depthStride:input:inputImageStride:output:outputImageStride:bias:)``.
  static let rowBlock = 8

  /// Whether `g` runs here: 1x1, stride 1, no padding, one group, images of fewer than
  /// ``KernelOptions/pointwiseDirectColumns`` positions (larger ones run one BLAS product per
  /// image, straight from the input), and channel counts that are multiples of 8 up to 256
  /// (wider layers keep BLAS, whose panels pay off there).
  public static func applies(_ g: ConvGeometry) -> Bool {
    g.isPointwise && g.groups == 1
      && g.outHeight * g.outWidth < KernelOptions.current.pointwiseDirectColumns
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
    product(
      weight, images: g.batch, rows: g.outChannels, depth: g.inChannels, positions: positions,
      rowStride: g.inChannels, depthStride: 1, input: x,
      inputImageStride: g.inChannels * positions, output: y,
      outputImageStride: g.outChannels * positions, bias: bias)
  }

  /// The input gradient, `dx = w^T dy` per image (overwritten). The weight gradient is not
  /// here: as one product over all images side by side (``ConvolutionKernel``'s general path)
  /// its inner dimension is long, while register blocks summed over the images read the planes
  /// from memory once per 4 x 4 block of weights and lost to it.
  public static func inputGradient(
    _ g: ConvGeometry, weight: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    inputGrad dx: UnsafeMutablePointer<Float>
  ) {
    precondition(applies(g), "not a small pointwise geometry: \(g)")
    let positions = g.outHeight * g.outWidth
    let (cin, cout) = (g.inChannels, g.outChannels)
    // Row m of w^T is column m of w: rows step by 1, the inner dimension by cin.
    product(
      weight, images: g.batch, rows: cin, depth: cout, positions: positions, rowStride: 1,
      depthStride: cin, input: dy, inputImageStride: cout * positions, output: dx,
      outputImageStride: cin * positions, bias: nil)
  }

  /// For every image `n`: `out[n][m][p] = bias[m] + sum over k of a(m, k) in[n][k][p]`, where
  /// `a(m, k) = weights[m * rowStride + k * depthStride]`; `rows` is a multiple of
  /// ``rowBlock``.
  static func product(
    _ weights: UnsafePointer<Float>, images: Int, rows: Int, depth: Int, positions: Int,
    rowStride: Int, depthStride: Int, input: UnsafePointer<Float>, inputImageStride: Int,
    output: UnsafeMutablePointer<Float>, outputImageStride: Int, bias: UnsafePointer<Float>?
  ) {
    let lanes = WideFloat.scalarCount
    let blocks = rows / rowBlock
    let inputEnd = input + images * inputImageStride
    let tailMask = wideLaneMask(keepingFirst: positions % lanes)
    // Work items: (image, block of eight output planes), in memory order.
    let items = images * blocks
    let perItem = rowBlock * depth * positions
    Parallel.forRanges(items, minimumChunk: max(1, (1 << 17) / max(1, perItem))) { range in
      for item in range {
        let (n, block) = item.quotientAndRemainder(dividingBy: blocks)
        let m0 = block * rowBlock
        let src = input + n * inputImageStride
        let dst = output + n * outputImageStride + m0 * positions
        let a = weights + m0 * rowStride
        var p = 0
        while p < positions {
          let partial = positions - p < lanes
          // The last vector of a plane reads past it: into the next plane, or (last plane of
          // the last image) past the input, where it reads lane by lane instead.
          let safe = !partial || src + (depth - 1) * positions + p + lanes <= inputEnd
          var acc0 = WideFloat(repeating: bias?[m0] ?? 0)
          var acc1 = WideFloat(repeating: bias?[m0 + 1] ?? 0)
          var acc2 = WideFloat(repeating: bias?[m0 + 2] ?? 0)
          var acc3 = WideFloat(repeating: bias?[m0 + 3] ?? 0)
          var acc4 = WideFloat(repeating: bias?[m0 + 4] ?? 0)
          var acc5 = WideFloat(repeating: bias?[m0 + 5] ?? 0)
          var acc6 = WideFloat(repeating: bias?[m0 + 6] ?? 0)
          var acc7 = WideFloat(repeating: bias?[m0 + 7] ?? 0)
          for k in 0..<depth {
            let row = src + k * positions + p
            let v = safe ? loadWide(row) : loadWidePartial(row, positions - p)
            let w = a + k * depthStride
            acc0 = acc0.addingProduct(v, WideFloat(repeating: w[0]))
            acc1 = acc1.addingProduct(v, WideFloat(repeating: w[rowStride]))
            acc2 = acc2.addingProduct(v, WideFloat(repeating: w[2 * rowStride]))
            acc3 = acc3.addingProduct(v, WideFloat(repeating: w[3 * rowStride]))
            acc4 = acc4.addingProduct(v, WideFloat(repeating: w[4 * rowStride]))
            acc5 = acc5.addingProduct(v, WideFloat(repeating: w[5 * rowStride]))
            acc6 = acc6.addingProduct(v, WideFloat(repeating: w[6 * rowStride]))
            acc7 = acc7.addingProduct(v, WideFloat(repeating: w[7 * rowStride]))
          }
          let out = dst + p
          if !partial {
            storeWide(acc0, out)
            storeWide(acc1, out + positions)
            storeWide(acc2, out + 2 * positions)
            storeWide(acc3, out + 3 * positions)
            storeWide(acc4, out + 4 * positions)
            storeWide(acc5, out + 5 * positions)
            storeWide(acc6, out + 6 * positions)
            storeWide(acc7, out + 7 * positions)
          } else {
            // A plane whose last vector ends inside this block is stored whole, the floats
            // past it (the next planes' first ones) written back as they are; past the block
            // another worker may be writing, so there the lanes go one by one.
            let left = positions - p
            let spill = lanes - left
            func store(_ v: WideFloat, _ j: Int) {
              if spill <= (rowBlock - 1 - j) * positions {
                storeWide(v, out + j * positions, keeping: tailMask)
              } else {
                for l in 0..<left { out[j * positions + l] = v[l] }
              }
            }
            store(acc0, 0)
            store(acc1, 1)
            store(acc2, 2)
            store(acc3, 3)
            store(acc4, 4)
            store(acc5, 5)
            store(acc6, 6)
            store(acc7, 7)
          }
          p += lanes
        }
      }
    }
  }

  /// The first `lanes` floats at `p` (fewer than a vector), the rest zero, read one by one.
  @inline(__always)
  static func loadWidePartial(_ p: UnsafePointer<Float>, _ lanes: Int) -> WideFloat {
    var v = WideFloat(repeating: 0)
    for l in 0..<min(lanes, WideFloat.scalarCount) { v[l] = p[l] }
    return v
  }
}
