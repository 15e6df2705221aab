/// The geometry of a square 2-D pooling window over `[planes, height, width]` buffers, with
/// PyTorch's semantics (`ceil_mode = false`): the output side is
/// `(side + 2 * padding - kernel) / stride + 1`.
public struct PoolGeometry: Sendable, Equatable {
  public var height: Int
  public var width: Int
  public var kernel: Int
  public var stride: Int
  public var padding: Int

  public init(height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
    self.height = height
    self.width = width
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
  }

  /// Output height (may be <= 0 when the window does not fit; callers check).
  public var outputHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
  /// Output width.
  public var outputWidth: Int { (width + 2 * padding - kernel) / stride + 1 }

  /// The input rows (or columns) window `o` covers, clipped to the input.
  @inlinable @inline(__always)
  func window(_ o: Int, side: Int) -> Range<Int> {
    let start = o * stride - padding
    return max(start, 0)..<min(start + kernel, side)
  }
}

/// Max and average pooling kernels, split across the cores by plane (one image channel).
public enum PoolingKernel {
  @inlinable
  static func planeChunk(_ g: PoolGeometry) -> Int {
    max(1, 16_384 / max(1, g.height * g.width))
  }

  /// Max pooling of `planes` planes. Padding counts as -infinity, so only input positions take
  /// part; ties keep the first position in row-major order and NaN propagates, as in PyTorch.
  /// `indices` receives, per output, the flat position of its maximum inside its plane.
  public static func maxForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    indices: UnsafeMutablePointer<Int32>, planes: Int, geometry g: PoolGeometry
  ) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let inPlane = g.height * g.width
    let outPlane = oh * ow
    let fast = g.kernel == 3 && g.stride == 2 && g.padding <= 1
    let vectorStart = fast ? g.padding : 0
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        let src = x + p * inPlane
        let dst = y + p * outPlane
        let idx = indices + p * outPlane
        for i in 0..<oh {
          let rows = g.window(i, side: g.height)
          // ShuffleNetV2's and ResNet's 3x3 stride-2 pool: eight outputs per step in the
          // interior of the row, the same scan order (so the same ties and NaNs) as below.
          let vectorEnd = fast ? max3x3Stride2Row(src, rows: rows, geometry: g, dst + i * ow, idx + i * ow) : 0
          for j in 0..<ow where j < vectorStart || j >= vectorEnd {
            let cols = g.window(j, side: g.width)
            var best = rows.lowerBound * g.width + cols.lowerBound
            var value = src[best]
            for r in rows {
              let row = src + r * g.width
              for c in cols {
                let v = row[c]
                if v > value || v.isNaN {
                  value = v
                  best = r * g.width + c
                }
              }
            }
            dst[i * ow + j] = value
            idx[i * ow + j] = Int32(best)
          }
        }
      }
    }
  }

  /// One output row of a 3x3 stride-2 max pool over the input `rows`, eight outputs at a time
  /// from output column `padding` on, as far as whole vectors stay inside the input row; returns
  /// the end of the columns it wrote (the caller does the rest).
  ///
  /// Outputs `j..<j+8` read input columns `2j - padding + t + 2k` for taps `t` in 0...2, lanes
  /// `k`: the even and odd halves of two 16-float loads. Each tap replaces the running maximum
  /// where it is greater or NaN, in row-major order, exactly as the scalar loop does.
  @inlinable
  static func max3x3Stride2Row(
    _ src: UnsafePointer<Float>, rows: Range<Int>, geometry g: PoolGeometry,
    _ dst: UnsafeMutablePointer<Float>, _ idx: UnsafeMutablePointer<Int32>
  ) -> Int {
    let w = g.width
    var j = g.padding
    let lane = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
    // The last load of a vector at j reads input column 2j - padding + 17.
    while 2 * j - g.padding + 17 <= w - 1 {
      let base = 2 * j - g.padding
      var value = SIMD8<Float>(repeating: -.infinity)
      var best = SIMD8<Int32>(repeating: 0)
      var first = true
      for r in rows {
        let row = src + r * w + base
        let a = UnsafeRawPointer(row).loadUnaligned(as: SIMD16<Float>.self)
        let b = UnsafeRawPointer(row + 2).loadUnaligned(as: SIMD16<Float>.self)
        let position = SIMD8<Int32>(repeating: Int32(r * w + base)) &+ lane
        let (v0, v1, v2) = (a.evenHalf, a.oddHalf, b.evenHalf)
        if first {
          value = v0
          best = position
          first = false
        }
        var take = (v0 .> value) .| (v0 .!= v0)
        value.replace(with: v0, where: take)
        best.replace(with: position, where: take)
        take = (v1 .> value) .| (v1 .!= v1)
        value.replace(with: v1, where: take)
        best.replace(with: position &+ 1, where: take)
        take = (v2 .> value) .| (v2 .!= v2)
        value.replace(with: v2, where: take)
        best.replace(with: position &+ 2, where: take)
      }
      UnsafeMutableRawPointer(dst + j).storeBytes(of: value, as: SIMD8<Float>.self)
      UnsafeMutableRawPointer(idx + j).storeBytes(of: best, as: SIMD8<Int32>.self)
      j += 8
    }
    // The right border: the row's last columns copied into a buffer padded with -infinity,
    // which never wins (not greater, not NaN); the first tap of every window is inside the row,
    // so the starting value and index are real ones, as in the scalar loop.
    let ow = g.outputWidth
    while j < ow {
      let base = 2 * j - g.padding
      let lanes = min(8, ow - j)
      var value = SIMD8<Float>(repeating: -.infinity)
      var best = SIMD8<Int32>(repeating: 0)
      var first = true
      for r in rows {
        var tail = (SIMD16<Float>(repeating: -.infinity), SIMD16<Float>(repeating: -.infinity))
        withUnsafeMutableBytes(of: &tail) { raw in
          let t = raw.baseAddress!.assumingMemoryBound(to: Float.self)
          let row = src + r * w
          for c in base..<min(w, base + 18) { t[c - base] = row[c] }
        }
        let a = tail.0
        let b = SIMD16<Float>(
          lowHalf: SIMD8(a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]),
          highHalf: SIMD8(a[10], a[11], a[12], a[13], a[14], a[15], tail.1[0], tail.1[1]))
        let position = SIMD8<Int32>(repeating: Int32(r * w + base)) &+ lane
        let (v0, v1, v2) = (a.evenHalf, a.oddHalf, b.evenHalf)
        if first {
          value = v0
          best = position
          first = false
        }
        var take = (v0 .> value) .| (v0 .!= v0)
        value.replace(with: v0, where: take)
        best.replace(with: position, where: take)
        take = (v1 .> value) .| (v1 .!= v1)
        value.replace(with: v1, where: take)
        best.replace(with: position &+ 1, where: take)
        take = (v2 .> value) .| (v2 .!= v2)
        value.replace(with: v2, where: take)
        best.replace(with: position &+ 2, where: take)
      }
      for l in 0..<lanes {
        dst[j + l] = value[l]
        idx[j + l] = best[l]
      }
      j += lanes
    }
    return j
  }

  /// Backward of max pooling: each output gradient goes to the input position that won.
  /// `dx` is overwritten.
  public static func maxBackward(
    _ dy: UnsafePointer<Float>, indices: UnsafePointer<Int32>, _ dx: UnsafeMutablePointer<Float>,
    planes: Int, geometry g: PoolGeometry
  ) {
    let inPlane = g.height * g.width
    let outPlane = g.outputHeight * g.outputWidth
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        let d = dx + p * inPlane
        d.update(repeating: 0, count: inPlane)
        let g = dy + p * outPlane
        let idx = indices + p * outPlane
        for o in 0..<outPlane { d[Int(idx[o])] += g[o] }
      }
    }
  }

  /// Average pooling with `count_include_pad = true`: every window divides by `kernel^2`
  /// (with `ceil_mode = false` no window reaches past the padding, so that is the window size).
  public static func averageForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int,
    geometry g: PoolGeometry
  ) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let inPlane = g.height * g.width
    let outPlane = oh * ow
    let scale = 1 / Float(g.kernel * g.kernel)
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        let src = x + p * inPlane
        let dst = y + p * outPlane
        for i in 0..<oh {
          let rows = g.window(i, side: g.height)
          for j in 0..<ow {
            let cols = g.window(j, side: g.width)
            var s: Float = 0
            for r in rows {
              let row = src + r * g.width
              for c in cols { s += row[c] }
            }
            dst[i * ow + j] = s * scale
          }
        }
      }
    }
  }

  /// Backward of average pooling: each output gradient, divided by `kernel^2`, spreads over the
  /// input positions of its window. `dx` is overwritten.
  public static func averageBackward(
    _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, planes: Int,
    geometry g: PoolGeometry
  ) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let inPlane = g.height * g.width
    let outPlane = oh * ow
    let scale = 1 / Float(g.kernel * g.kernel)
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        let d = dx + p * inPlane
        d.update(repeating: 0, count: inPlane)
        let src = dy + p * outPlane
        for i in 0..<oh {
          let rows = g.window(i, side: g.height)
          for j in 0..<ow {
            let cols = g.window(j, side: g.width)
            let v = src[i * ow + j] * scale
            for r in rows {
              let row = d + r * g.width
              for c in cols { row[c] += v }
            }
          }
        }
      }
    }
  }
}
