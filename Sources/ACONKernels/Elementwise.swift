/// Elementwise kernels over contiguous float buffers, vectorised and split across the cores.
public enum ElementwiseKernel {
  /// Applies `f` to every element of `x`, writing `y` (which may be `x`).
  @inlinable @inline(__always)
  public static func map(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
    _ f: (Float8) -> Float8
  ) {
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let xs = x + range.lowerBound
      let ys = y + range.lowerBound
      forEachVector(range.count) { i, lanes in
        store8(f(load8(xs + i, lanes: lanes)), ys + i, lanes: lanes)
      }
    }
  }

  /// Combines `a` and `b` elementwise with `f`, writing `y` (which may alias either input).
  @inlinable @inline(__always)
  public static func zip(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    count: Int, _ f: (Float8, Float8) -> Float8
  ) {
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let o = range.lowerBound
      forEachVector(range.count) { i, lanes in
        store8(
          f(load8(a + o + i, lanes: lanes), load8(b + o + i, lanes: lanes)), y + o + i,
          lanes: lanes)
      }
    }
  }

  /// Combines three buffers elementwise with `f`.
  @inlinable @inline(__always)
  public static func zip3(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, count: Int, _ f: (Float8, Float8, Float8) -> Float8
  ) {
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let o = range.lowerBound
      forEachVector(range.count) { i, lanes in
        store8(
          f(
            load8(a + o + i, lanes: lanes), load8(b + o + i, lanes: lanes),
            load8(c + o + i, lanes: lanes)), y + o + i, lanes: lanes)
      }
    }
  }

  public static func add(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    zip(a, b, y, count: count) { $0 + $1 }
  }

  /// `dst[i * destinationStride + j] += src[i * sourceStride + j]` for `blocks` runs of
  /// `length` floats (a gradient added into every other plane of another).
  public static func addBlocks(
    _ src: UnsafePointer<Float>, sourceStride: Int, into dst: UnsafeMutablePointer<Float>,
    destinationStride: Int, blocks: Int, length: Int
  ) {
    let lanes = WideFloat.scalarCount
    Parallel.forRanges(blocks, minimumChunk: max(1, 16384 / max(length, 1))) { range in
      for i in range {
        let (s, d) = (src + i * sourceStride, dst + i * destinationStride)
        var j = 0
        while j + lanes <= length {
          storeWide(loadWide(d + j) + loadWide(s + j), d + j)
          j += lanes
        }
        while j < length {
          d[j] += s[j]
          j += 1
        }
      }
    }
  }

  public static func subtract(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    zip(a, b, y, count: count) { $0 - $1 }
  }

  public static func multiply(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    zip(a, b, y, count: count) { $0 * $1 }
  }

  /// `y = alpha * x`.
  public static func scale(
    _ x: UnsafePointer<Float>, by alpha: Float, _ y: UnsafeMutablePointer<Float>, count: Int
  ) {
    let a = Float8(repeating: alpha)
    map(x, y, count: count) { $0 * a }
  }

  /// `y = alpha * x + y`.
  public static func axpy(
    alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int
  ) {
    let a = Float8(repeating: alpha)
    zip(x, UnsafePointer(y), y, count: count) { x, y in y.plusProduct(a, x) }
  }

  /// `y = max(x, 0)`.
  public static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
    let zero = Float8(repeating: 0)
    map(x, y, count: count) { $0.replacing(with: zero, where: $0 .< zero) }
  }

  /// `dx = dy` where `x > 0`, else 0 (PyTorch's convention at 0).
  public static func reluBackward(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    let zero = Float8(repeating: 0)
    zip(x, dy, dx, count: count) { x, g in g.replacing(with: zero, where: x .<= zero) }
  }

  /// `y = sigmoid(x)`.
  public static func sigmoid(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int
  ) {
    map(x, y, count: count) { fastSigmoid($0) }
  }

  /// `dx = dy * s (1 - s)` from the forward output `s`.
  public static func sigmoidBackward(
    output s: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    let one = Float8(repeating: 1)
    zip(s, dy, dx, count: count) { s, g in g * s * (one - s) }
  }

  /// Sum of all elements, accumulated in Float64 per chunk for accuracy.
  public static func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var total = 0.0
    // Deterministic: fixed blocks summed in order, independent of the thread count.
    var i = 0
    while i < count {
      let n = min(8192, count - i)
      var acc = Float8(repeating: 0)
      forEachVector(n) { j, lanes in acc += load8(x + i + j, lanes: lanes) }
      total += Double(horizontalSum(acc))
      i += n
    }
    return Float(total)
  }

  /// Copies `count` floats from `x` to `y` (which must not overlap) on the kernels' threads.
  public static func copy(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
    Parallel.forRanges(count, minimumChunk: 1 << 16) { r in
      (y + r.lowerBound).update(from: x + r.lowerBound, count: r.count)
    }
  }

  /// Fills `y` with `value`.
  public static func fill(_ y: UnsafeMutablePointer<Float>, count: Int, value: Float) {
    y.update(repeating: value, count: count)
  }
}

extension ElementwiseKernel {
  /// Sum of a short run on the calling thread (for use inside a parallel loop).
  @inlinable
  public static func sumSerial(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var acc = Float8(repeating: 0)
    forEachVector(count) { j, lanes in acc += load8(x + j, lanes: lanes) }
    return horizontalSum(acc)
  }
}
