/// Unfolding image patches into the columns of a matrix (im2col) and folding them back (col2im),
/// so that a convolution becomes one matrix product per image (or per batch of small images).
///
/// The column matrix of one image has `channels * kernelHeight * kernelWidth` rows, row
/// `(c * kernelHeight + i) * kernelWidth + j` holding input channel `c` seen through tap `(i, j)`
/// at every output position `oh * outWidth + ow`. Several images can sit side by side in one
/// matrix: image `b` fills columns `b * outHeight * outWidth ..< (b + 1) * outHeight * outWidth`.
public enum Im2colKernel {
  /// The output columns `ow` whose input column `ow * stride - padding + tap * dilation` lies in
  /// `0 ..< width`, for one kernel column `tap`.
  @inlinable
  static func validColumns(_ g: ConvGeometry, kernelColumn tap: Int) -> Range<Int> {
    let shift = tap * g.dilation - g.padding
    // First ow with ow * s + shift >= 0, and first ow with ow * s + shift >= width.
    let low = shift >= 0 ? 0 : (-shift + g.stride - 1) / g.stride
    let limit = g.width - shift
    let high = limit <= 0 ? 0 : (limit + g.stride - 1) / g.stride
    let lo = min(low, g.outWidth)
    return lo..<max(lo, min(high, g.outWidth))
  }

  /// Writes the columns of `images` images into `col`, whose rows are `ldc` floats apart.
  ///
  /// - Parameters:
  ///   - x: the first image's first channel plane used (`[channels, height, width]` per image).
  ///   - imageStride: floats from one image to the next in `x`.
  ///   - channels: input channels unfolded (one group's worth).
  ///   - col: `channels * kh * kw` rows of `images * outHeight * outWidth` columns used.
  public static func unfold(
    _ x: UnsafePointer<Float>, imageStride: Int, images: Int, channels: Int,
    geometry g: ConvGeometry,
    col: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let rows = channels * g.kernelHeight * g.kernelWidth
    let spatial = g.outHeight * g.outWidth
    // Each item is one row of one image: `spatial` floats written.
    Parallel.forRanges(images * rows, minimumChunk: max(1, 32768 / max(1, spatial))) { range in
      unfoldRows(
        x, imageStride: imageStride, rows: range, geometry: g, outputRows: 0..<g.outHeight,
        col: col, ldc: ldc, channelsRows: rows)
    }
  }

  /// ``unfold(_:imageStride:images:channels:geometry:col:ldc:)`` of one image on the calling
  /// thread (for callers that already run one image per worker), of the output rows
  /// `outputRows` only when given: a run of rows whose columns stay in cache for the product
  /// that reads them.
  static func unfoldSerial(
    _ x: UnsafePointer<Float>, channels: Int, geometry g: ConvGeometry,
    outputRows: Range<Int>? = nil, col: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let rows = channels * g.kernelHeight * g.kernelWidth
    unfoldRows(
      x, imageStride: 0, rows: 0..<rows, geometry: g, outputRows: outputRows ?? 0..<g.outHeight,
      col: col, ldc: ldc, channelsRows: rows)
  }

  /// Items `items` (row `item % channelsRows` of image `item / channelsRows`) of an unfold,
  /// restricted to the output rows `outputRows` (all of them for several images side by side):
  /// output row `y` lands at column `(y - outputRows.lowerBound) * outWidth` of its image.
  @inline(__always)
  static func unfoldRows(
    _ x: UnsafePointer<Float>, imageStride: Int, rows range: Range<Int>, geometry g: ConvGeometry,
    outputRows: Range<Int>, col: UnsafeMutablePointer<Float>, ldc: Int, channelsRows rows: Int
  ) {
    let (kh, kw) = (g.kernelHeight, g.kernelWidth)
    let (oh, ow) = (g.outHeight, g.outWidth)
    let plane = g.height * g.width
    let spatial = outputRows.count * ow
    if g.isPointwise {
      precondition(outputRows == 0..<oh, "a 1x1 unfold copies whole planes")
      // 1x1, stride 1, no padding (small images batched side by side): each row is a plane.
      for item in range {
        let (b, c) = item.quotientAndRemainder(dividingBy: rows)
        copyShortRow(
          from: x + b * imageStride + c * plane, to: col + c * ldc + b * spatial, count: plane)
      }
      return
    }
    for item in range {
      let b = item / rows
      let r = item % rows
      let c = r / (kh * kw)
      let i = (r / kw) % kh
      let j = r % kw
      let src = x + b * imageStride + c * plane
      let dst = col + r * ldc + b * spatial
      let cols = validColumns(g, kernelColumn: j)
      let shift = j * g.dilation - g.padding
      for y in outputRows {
        let iy = y * g.stride - g.padding + i * g.dilation
        let out = dst + (y - outputRows.lowerBound) * ow
        if iy < 0 || iy >= g.height || cols.isEmpty {
          out.update(repeating: 0, count: ow)
          continue
        }
        if cols.lowerBound > 0 { out.update(repeating: 0, count: cols.lowerBound) }
        let row = src + iy * g.width
        if g.stride == 1 {
          (out + cols.lowerBound).update(
            from: row + cols.lowerBound + shift, count: cols.count)
        } else {
          var ix = cols.lowerBound * g.stride + shift
          var o = cols.lowerBound
          if g.stride == 2 {
            // Stride 2 (stems, downsampling): eight outputs are the even half of 16 inputs,
            // while all 16 lie inside the row.
            while o + 8 <= cols.upperBound && ix + 16 <= g.width {
              store8(loadDeinterleaved(row + ix).even, out + o)
              o += 8
              ix += 16
            }
          }
          while o < cols.upperBound {
            out[o] = row[ix]
            ix += g.stride
            o += 1
          }
        }
        if cols.upperBound < ow {
          (out + cols.upperBound).update(repeating: 0, count: ow - cols.upperBound)
        }
      }
    }
  }

  /// Adds the columns of `images` images in `col` back into their input positions, the adjoint of
  /// ``unfold(_:imageStride:images:channels:geometry:col:ldc:)``: it overwrites the `channels`
  /// planes of every image of `dx` (gradient of the input) with the folded sums, or with
  /// `accumulating` adds them to what `dx` holds.
  public static func fold(
    _ col: UnsafePointer<Float>, ldc: Int, images: Int, channels: Int, geometry g: ConvGeometry,
    dx: UnsafeMutablePointer<Float>, imageStride: Int, accumulating: Bool = false
  ) {
    let (kh, kw) = (g.kernelHeight, g.kernelWidth)
    let (oh, ow) = (g.outHeight, g.outWidth)
    let plane = g.height * g.width
    let spatial = oh * ow
    // Each item is one channel plane of one image; planes are disjoint, so no two threads write
    // the same input element.
    Parallel.forRanges(
      images * channels, minimumChunk: max(1, 32768 / max(1, spatial * kh * kw))
    ) { range in
      for item in range {
        let b = item / channels
        let c = item % channels
        let dst = dx + b * imageStride + c * plane
        if g.isPointwise {
          // One tap, no overlap: the plane is the column row itself.
          if accumulating {
            addInPlace(dst, col + c * ldc + b * spatial, count: plane)
          } else {
            copyShortRow(from: col + c * ldc + b * spatial, to: dst, count: plane)
          }
          continue
        }
        if !accumulating { dst.update(repeating: 0, count: plane) }
        for i in 0..<kh {
          for j in 0..<kw {
            let r = (c * kh + i) * kw + j
            let src = col + r * ldc + b * spatial
            let cols = validColumns(g, kernelColumn: j)
            if cols.isEmpty { continue }
            let shift = j * g.dilation - g.padding
            for y in 0..<oh {
              let iy = y * g.stride - g.padding + i * g.dilation
              if iy < 0 || iy >= g.height { continue }
              let row = dst + iy * g.width
              let s = src + y * ow
              if g.stride == 1 {
                addInPlace(row + cols.lowerBound + shift, s + cols.lowerBound, count: cols.count)
              } else {
                var ix = cols.lowerBound * g.stride + shift
                var o = cols.lowerBound
                if g.stride == 2 {
                  // Eight columns add into the even half of 16 inputs.
                  while o + 8 <= cols.upperBound && ix + 16 <= g.width {
                    let sum =
                      UnsafeRawPointer(row + ix).loadUnaligned(as: SIMD16<Float>.self)
                      + spreadToEven(load8(s + o))
                    UnsafeMutableRawPointer(row + ix).storeBytes(of: sum, as: SIMD16<Float>.self)
                    o += 8
                    ix += 16
                  }
                }
                while o < cols.upperBound {
                  row[ix] += s[o]
                  ix += g.stride
                  o += 1
                }
              }
            }
          }
        }
      }
    }
  }

  /// `y += x` over a short run, on the calling thread.
  @inlinable @inline(__always)
  static func addInPlace(
    _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int
  ) {
    var k = 0
    while k + 8 <= count {
      store8(load8(y + k) + load8(x + k), y + k)
      k += 8
    }
    while k < count {
      y[k] += x[k]
      k += 1
    }
  }
}
