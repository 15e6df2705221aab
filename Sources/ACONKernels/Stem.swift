/// The stride-2 3x3 stem of ShuffleNetV2 and MobileNet (an image of up to four channels,
/// padding 1), computed straight from the image rows instead of through an unfolded column matrix.
///
/// The general path writes a `[27, positions]` column matrix per image (as large as the output
/// and four times the input) and leaves oneDNN a product of inner dimension 27. Here each output
/// row is computed from its three input rows per channel, split once into their even and odd
/// columns: for output column `ox`, taps `kx = 0, 1, 2` read input columns `2 ox - 1`, `2 ox`,
/// `2 ox + 1`, that is the odd columns shifted by one, the even columns and the odd columns. A
/// row's taps (`cin x 9` rows of `outWidth` floats, zero where they fall in the padding) stay in
/// L1 while eight output channels at a time run over sixteen output columns, each tap vector
/// loaded once for eight multiply-adds with broadcast weights. ShuffleNetV2's stem in its
/// training step (batch 32, `acon bench --profile`): 7.5-8.5 ms through the column matrix, 4.9-5.6
/// here.
///
/// A stride-1 stem (the small-image networks': Fashion-MNIST's one channel of 28x28) runs the
/// same way, each tap a row of the input with a zero on either side, read from one float
/// before, at and after the output column. Fashion-MNIST's stem in its training step (batch
/// 128, `acon bench --profile`, 2 rounds alternating): 1.02-1.06 ms through the column matrix
/// (a product of inner dimension 9), 0.50-0.52 here; 0.84-0.88 while a row's last, partial
/// vector (12 of 16 floats at 28 wide) was stored float by float.
///
/// The gradients stay on the general path: a weight gradient computed the same way from the
/// split rows (4 x 4 blocks of lane sums per row) took as long in the step as the column matrix
/// with ``LongInnerProduct``, and a stem's image needs no input gradient.
public enum StemKernel {
  /// Whether `g` runs here: 3x3, stride 2 or 1, padding 1, no dilation, one group, at most
  /// four input channels, output channels in blocks of eight, and 16-float vectors (the only
  /// width measured against the general path).
  public static func applies(_ g: ConvGeometry) -> Bool {
    WideFloat.scalarCount == 16 && g.kernelHeight == 3 && g.kernelWidth == 3
      && (g.stride == 2 || g.stride == 1) && g.padding == 1 && g.dilation == 1 && g.groups == 1
      && g.inChannels <= 4 && g.outChannels % 8 == 0 && g.outWidth >= 1 && g.outHeight >= 1
  }

  /// Floats of one tap row: the output row rounded up to whole vectors, and one vector more
  /// (the odd columns, or at stride 1 the row, are stored one float in, and a vector may start
  /// at the last column and read two floats past it).
  static func rowFloats(_ g: ConvGeometry) -> Int {
    (g.outWidth + 15) / 16 * 16 + 16
  }

  /// Input row `iy` of channel `c` of image `n` one float in, `padded[1 + ix] = x[ix]`, zero
  /// before and after it and for rows in the padding (stride 1).
  @inline(__always)
  static func padRow(
    _ g: ConvGeometry, _ x: UnsafePointer<Float>, image n: Int, channel c: Int, row iy: Int,
    into padded: UnsafeMutablePointer<Float>
  ) {
    let floats = rowFloats(g)
    guard iy >= 0 && iy < g.height else {
      padded.update(repeating: 0, count: floats)
      return
    }
    padded[0] = 0
    (padded + 1).update(
      from: x + ((n * g.inChannels + c) * g.height + iy) * g.width, count: g.width)
    (padded + 1 + g.width).update(repeating: 0, count: floats - 1 - g.width)
  }

  /// Splits input row `iy` of channel `c` of image `n` into its even columns (`even[ox] =
  /// x[2 ox]`) and odd ones (`odd[1 + ox] = x[2 ox + 1]`, `odd[0] = 0`), zero past the row and
  /// for rows in the padding.
  @inline(__always)
  static func splitRow(
    _ g: ConvGeometry, _ x: UnsafePointer<Float>, image n: Int, channel c: Int, row iy: Int,
    even: UnsafeMutablePointer<Float>, odd: UnsafeMutablePointer<Float>
  ) {
    let floats = rowFloats(g)
    if iy < 0 || iy >= g.height {
      even.update(repeating: 0, count: floats)
      odd.update(repeating: 0, count: floats)
      return
    }
    // Only the padding: the columns in between are all written below.
    odd[0] = 0
    (even + g.outWidth).update(repeating: 0, count: floats - g.outWidth)
    (odd + 1 + g.outWidth).update(repeating: 0, count: floats - 1 - g.outWidth)
    let row = x + ((n * g.inChannels + c) * g.height + iy) * g.width
    var ox = 0
    while ox + 8 <= g.outWidth && 2 * ox + 16 <= g.width {
      let (e, o) = loadDeinterleaved(row + 2 * ox)
      store8(e, even + ox)
      store8(o, odd + 1 + ox)
      ox += 8
    }
    while ox < g.outWidth {
      even[ox] = 2 * ox < g.width ? row[2 * ox] : 0
      odd[1 + ox] = 2 * ox + 1 < g.width ? row[2 * ox + 1] : 0
      ox += 1
    }
  }

  /// The tap rows of output row `oy` of image `n` into `taps` (`cin x 3` pairs of rows at
  /// stride 2, `cin x 3` padded rows at stride 1) and, in `tap[t]` for `t = (c * 3 + ky) * 3 +
  /// kx` (the weight's order), where each tap starts.
  @inline(__always)
  static func splitTaps(
    _ g: ConvGeometry, _ x: UnsafePointer<Float>, image n: Int, outputRow oy: Int,
    taps: UnsafeMutablePointer<Float>, tap: UnsafeMutablePointer<UnsafePointer<Float>>
  ) {
    let floats = rowFloats(g)
    if g.stride == 1 {
      for c in 0..<g.inChannels {
        for ky in 0..<3 {
          let first = (c * 3 + ky) * 3
          let padded = taps + (c * 3 + ky) * floats
          padRow(g, x, image: n, channel: c, row: oy - 1 + ky, into: padded)
          (tap[first], tap[first + 1], tap[first + 2]) = (
            UnsafePointer(padded), UnsafePointer(padded + 1), UnsafePointer(padded + 2)
          )
        }
      }
      return
    }
    for c in 0..<g.inChannels {
      for ky in 0..<3 {
        let pair = (c * 3 + ky) * 3
        let even = taps + 2 * pair / 3 * floats
        let odd = even + floats
        splitRow(g, x, image: n, channel: c, row: 2 * oy - 1 + ky, even: even, odd: odd)
        (tap[pair], tap[pair + 1], tap[pair + 2]) = (
          UnsafePointer(odd), UnsafePointer(even), UnsafePointer(odd + 1)
        )
      }
    }
  }

  /// `y = conv(x, w) + b` (overwritten).
  public static func forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    precondition(applies(g), "not a 3x3 stem: \(g)")
    let (cout, depth, outW) = (g.outChannels, 9 * g.inChannels, g.outWidth)
    let lanes = WideFloat.scalarCount
    let rowsPerImage = g.outHeight
    let planeStride = g.outHeight * outW
    // For each tap, the eight weights of a block side by side (broadcast from one pointer).
    PointwiseKernel.withWeightsByInput(weight, outputs: cout, inputs: depth) { transposed in
      Parallel.forRanges(g.batch * rowsPerImage, minimumChunk: 4) { items in
        let taps = UnsafeMutablePointer<Float>.allocate(
          capacity: 2 * 3 * g.inChannels * rowFloats(g))
        let tap = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: depth)
        defer {
          taps.deallocate()
          tap.deallocate()
        }
        for item in items {
          let (n, oy) = item.quotientAndRemainder(dividingBy: rowsPerImage)
          splitTaps(g, x, image: n, outputRow: oy, taps: taps, tap: tap)
          for m0 in stride(from: 0, to: cout, by: 8) {
            let a = transposed + m0
            let blockBias = bias.map { $0 + m0 }
            let out = y + ((n * cout + m0) * g.outHeight + oy) * outW
            var ox = 0
            while ox < outW {
              var sums = EightRowSums(bias: blockBias)
              for t in 0..<depth { sums.accumulate(loadWide(tap[t] + ox), weights: a + t * cout) }
              if ox + lanes <= outW {
                sums.store(to: out + ox, rowStride: planeStride)
              } else {
                // A row's last, partial vector goes in pieces that end with it (eight floats,
                // four, then one by one): the floats after it are the next row's, another
                // item's.
                for j in 0..<8 {
                  storeWidePrefix(sums.row(j), out + j * planeStride + ox, count: outW - ox)
                }
              }
              ox += lanes
            }
          }
        }
      }
    }
  }
}
