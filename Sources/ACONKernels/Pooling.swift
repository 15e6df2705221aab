/// The geometry of a square 2-D pooling window over `[planes, height, width]` buffers, with
/// PyTorch's semantics (`ceil_mode = false`): the output side is
/// `(side + 2 * padding - kernel) / stride + 1`.
public struct PoolGeometry: Sendable, Equatable {
  /// Input height `H`.
  public var height: Int
  /// Input width `W`.
  public var width: Int
  /// Window side.
  public var kernel: Int
  /// Step between windows, along both axes.
  public var stride: Int
  /// Implicit rows and columns added on every side; they never win a max and count as zeros
  /// in an average.
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

  /// The output columns `start..<end` the vector paths of `lanes` lanes serve: every window of
  /// them lies inside the row, and so does every float their loads touch. The range holds at
  /// least `lanes` columns, or is empty; a last partial block is run overlapping the one before
  /// it, which only recomputes a few outputs. Strides other than 1 and 2 get no vector columns.
  @inlinable
  func vectorColumns(lanes: Int = 8) -> (start: Int, end: Int) {
    guard stride == 1 || stride == 2 else { return (0, 0) }
    var first = (padding + stride - 1) / stride
    // Stride 2 reads the odd lanes of twice the lanes' floats starting one before the window,
    // so the window must not start at column 0.
    if stride == 2 && first * stride - padding == 0 { first += 1 }
    // The last output whose window ends inside the row.
    let last = (width - kernel + padding) / stride
    guard width - kernel + padding >= 0, last - first + 1 >= lanes else { return (0, 0) }
    return (first, last + 1)
  }
}

/// The floats at `p[0], p[2], ..., p[14]`: one sixteen-float load from `p - 1`, odd lanes
/// kept, so that nothing past `p[14]` is touched (`p - 1` must be readable).
@inlinable @inline(__always)
func loadStrided8(_ p: UnsafePointer<Float>) -> Float8 {
  loadDeinterleaved(p - 1).odd
}

/// The floats at `p[0], p[2], ...`, one ``WideFloat`` of them: the odd lanes of twice as many
/// floats loaded from `p - 1`, so that nothing past the last one is touched (`p - 1` must be
/// readable).
@inlinable @inline(__always)
func loadStridedWide(_ p: UnsafePointer<Float>) -> WideFloat {
  #if ACON_VECTOR16
    let pairs = UnsafeRawPointer(p - 1).loadUnaligned(as: SIMD16<UInt64>.self) &>> 32
    let odd = SIMD16(lowHalf: lowHalves(pairs.lowHalf), highHalf: lowHalves(pairs.highHalf))
    return unsafeBitCast(odd, to: WideFloat.self)
  #else
    return loadStrided8(p)
  #endif
}

/// Whether a max pool keeps the position of each window's maximum (training) or not
/// (inference): a type, so that each kernel is compiled with the answer as a constant.
protocol MaxPoolPositions { static var kept: Bool { get } }
enum KeepsPositions: MaxPoolPositions { static var kept: Bool { true } }
enum KeepsNoPositions: MaxPoolPositions { static var kept: Bool { false } }

/// Max and average pooling kernels, split across the cores by plane (one image channel).
public enum PoolingKernel {
  @inlinable
  static func planeChunk(_ g: PoolGeometry) -> Int {
    max(1, 16_384 / max(1, g.height * g.width))
  }

  /// Max pooling of `planes` planes. Padding counts as -infinity, so only input positions take
  /// part; ties keep the first position in row-major order and NaN propagates, as in PyTorch.
  /// `indices` receives, per output, the flat position of its maximum inside its plane.
  ///
  /// Interior output columns run a ``WideFloat`` (sixteen with AVX-512) at a time for strides
  /// 1 and 2 (stride 2 loads twice as many inputs and keeps the even lanes); border columns and
  /// other strides run one at a time.
  /// Every selection is a mask blend, so random data costs no branch mispredictions.
  public static func maxForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    indices: UnsafeMutablePointer<Int32>, planes: Int, geometry g: PoolGeometry
  ) {
    maxForward(x, y, indices: indices, planes: planes, geometry: g, KeepsPositions.self)
  }

  /// Max pooling without the positions of the maxima (inference: nothing will route a gradient
  /// back), the same values as ``maxForward(_:_:indices:planes:geometry:)``: no index is
  /// selected or written, a third of the forward's stores and half its blends.
  public static func maxForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int,
    geometry g: PoolGeometry
  ) {
    maxForward(x, y, indices: nil, planes: planes, geometry: g, KeepsNoPositions.self)
  }

  /// Both max pools, specialised by `Positions`, so that the one without positions carries none
  /// of their work.
  static func maxForward<Positions: MaxPoolPositions>(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    indices: UnsafeMutablePointer<Int32>?, planes: Int, geometry g: PoolGeometry,
    _: Positions.Type
  ) {
    let inPlane = g.height * g.width
    let outPlane = g.outputHeight * g.outputWidth
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        maxPlane(
          x + p * inPlane, y + p * outPlane, indices.map { $0 + p * outPlane }, g, Positions.self)
      }
    }
  }

  /// One plane of ``maxForward(_:_:indices:planes:geometry:_:)`` (`indices` nil unless
  /// `Positions` keeps them), or its output rows `outputRows` (they read only input rows
  /// `outputRows.lowerBound * stride - padding` up to the last window's end).
  @inline(__always)
  static func maxPlane<Positions: MaxPoolPositions>(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
    _ idx: UnsafeMutablePointer<Int32>?, _ g: PoolGeometry, _: Positions.Type,
    outputRows: Range<Int>? = nil
  ) {
    let keepsPositions = Positions.kept
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let (w, s, k) = (g.width, g.stride, g.kernel)
    // Columns 0..<vectorStart and vectorEnd..<ow one at a time, the rest a vector at a time.
    let lanes = WideFloat.scalarCount
    let (vectorStart, vectorEnd) = g.vectorColumns(lanes: lanes)
    var laneOffsets = WideLaneMask()
    for l in 0..<lanes { laneOffsets[l] = Int32(l * s) }
    for i in outputRows ?? 0..<oh {
      let rows = g.window(i, side: g.height)
      @inline(__always) func scalar(_ j: Int) {
        let cols = g.window(j, side: w)
        var best = rows.lowerBound * w + cols.lowerBound
        var value = -Float.infinity
        for r in rows {
          let row = src + r * w
          for c in cols {
            let v = row[c]
            let better = v > value || v.isNaN
            value = better ? v : value
            if keepsPositions { best = better ? r * w + c : best }
          }
        }
        dst[i * ow + j] = value
        if keepsPositions { idx.unsafelyUnwrapped[i * ow + j] = Int32(best) }
      }
      for j in 0..<vectorStart { scalar(j) }
      var block = vectorStart
      while block < vectorEnd {
        let j = min(block, vectorEnd - lanes)
        let first = j * s - g.padding
        var value = WideFloat(repeating: -.infinity)
        var best = WideLaneMask(repeating: Int32(rows.lowerBound * w + first)) &+ laneOffsets
        for r in rows {
          let row = src + (r &* w &+ first)
          let rowPosition =
            WideLaneMask(repeating: Int32(truncatingIfNeeded: r &* w &+ first)) &+ laneOffsets
          @inline(__always) func step(_ kc: Int) {
            let v = s == 1 ? loadWide(row + kc) : loadStridedWide(row + kc)
            let better = (v .> value) .| (v .!= v)
            value.replace(with: v, where: better)
            if keepsPositions {
              best.replace(with: rowPosition &+ Int32(truncatingIfNeeded: kc), where: better)
            }
          }
          if k == 3 {
            // The common window (ShuffleNetV2 and ResNet stems), unrolled.
            step(0)
            step(1)
            step(2)
          } else {
            for kc in 0..<k { step(kc) }
          }
        }
        storeWide(value, dst + i * ow + j)
        if keepsPositions {
          UnsafeMutableRawPointer(idx.unsafelyUnwrapped + i * ow + j).storeBytes(
            of: best, as: WideLaneMask.self)
        }
        block += lanes
      }
      for j in vectorEnd..<ow { scalar(j) }
    }
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
        scatterPlane(
          dy + p * outPlane, indices: indices + p * outPlane, dx + p * inPlane,
          inPlane: inPlane, outPlane: outPlane)
      }
    }
  }

  /// One plane of ``maxBackward(_:indices:_:planes:geometry:)``: `dx` (`inPlane` floats)
  /// overwritten with the `outPlane` gradients `dy` added at their maxima.
  @inline(__always)
  static func scatterPlane(
    _ dy: UnsafePointer<Float>, indices: UnsafePointer<Int32>, _ dx: UnsafeMutablePointer<Float>,
    inPlane: Int, outPlane: Int
  ) {
    dx.update(repeating: 0, count: inPlane)
    for o in 0..<outPlane { dx[Int(indices[o])] += dy[o] }
  }

  /// Average pooling with `count_include_pad = true`: every window divides by `kernel^2`
  /// (with `ceil_mode = false` no window reaches past the padding, so that is the window size).
  /// Interior columns run eight at a time as in ``maxForward``.
  public static func averageForward(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int,
    geometry g: PoolGeometry
  ) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let (w, s, k) = (g.width, g.stride, g.kernel)
    let inPlane = g.height * w
    let outPlane = oh * ow
    let scale = 1 / Float(k * k)
    // Columns 0..<vectorStart and vectorEnd..<ow one at a time, the rest eight at a time.
    let (vectorStart, vectorEnd) = g.vectorColumns()
    Parallel.forRanges(planes, minimumChunk: planeChunk(g)) { range in
      for p in range {
        let src = x + p * inPlane
        let dst = y + p * outPlane
        for i in 0..<oh {
          let rows = g.window(i, side: g.height)
          @inline(__always) func scalar(_ j: Int) {
            let cols = g.window(j, side: w)
            var sum: Float = 0
            for r in rows {
              let row = src + r * w
              for c in cols { sum += row[c] }
            }
            dst[i * ow + j] = sum * scale
          }
          for j in 0..<vectorStart { scalar(j) }
          var block = vectorStart
          while block < vectorEnd {
            let j = min(block, vectorEnd - 8)
            let first = j * s - g.padding
            var sum = Float8(repeating: 0)
            for r in rows {
              let row = src + r * w
              for kc in 0..<k {
                sum += s == 1 ? load8(row + first + kc) : loadStrided8(row + first + kc)
              }
            }
            store8(sum * Float8(repeating: scale), dst + i * ow + j)
            block += 8
          }
          for j in vectorEnd..<ow { scalar(j) }
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
