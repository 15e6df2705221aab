#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Stride-1 3x3 depthwise layers with padding 1 on small planes (``DepthwiseKernel/runsFlat(_:)``):
/// the late stages of a network on 224x224 images (28x28 to 7x7) and all of them on small images.
///
/// The plane is read as one flat row of `height * width` floats, a whole vector at a time: tap
/// `(i, j)` of output `q` reads input `q + (i - 1) * width + (j - 1)`, and a lane mask per vector
/// and tap clears the lanes whose tap falls into the padding (the row above or below, or the
/// column wrapped around from the previous or next row) or whose output lies past the plane.
/// Nothing is copied and no row is a loop of its own: a 7x7 plane is four 16-float vectors per
/// tap, where the padded-copy path (``DepthwiseKernel``) copied it first and then ran seven rows
/// of one 8-float vector each. The weight gradient keeps its nine sums per channel as vectors
/// across planes, instead of nine horizontal sums per plane.
extension DepthwiseKernel {
  /// The largest plane (in floats) that runs flat: 32x32, whose masks (64 vectors of nine taps,
  /// 36 KB at 16 lanes) still stay in L1. At 28x28 and batch 128 the flat kernels took 0.8-0.9 ms
  /// forward against 1.0-1.2 for the padded copy, 2.7-2.9 forward and backward against 3.4-4.3;
  /// at 56x56 they were no faster.
  static let flatPlaneLimit = 1024

  /// Whether `g` runs through the flat kernels.
  package static func runsFlat(_ g: ConvGeometry) -> Bool {
    g.isDepthwise && g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 1
      && g.padding == 1 && g.dilation == 1 && g.height * g.width <= flatPlaneLimit
  }

  /// The lane masks of a flat plane: `masks[v * 9 + t]` keeps the lanes of vector `v` that lie
  /// inside the plane and whose tap `t` (row-major in the 3x3 filter) does too.
  struct FlatTaps {
    let height: Int
    let width: Int
    let vectors: Int
    let masks: UnsafePointer<WideLaneMask>

    var plane: Int { height * width }
    /// How far before a vector's first float, and after its last, a tap reads.
    var reach: Int { width + 1 }
    /// Floats of a scratch copy of one plane with its reach on both sides.
    var scratchCount: Int { vectors * WideFloat.scalarCount + 2 * reach }

    init(height: Int, width: Int) {
      let lanes = WideFloat.scalarCount
      self.height = height
      self.width = width
      let vectors = (height * width + lanes - 1) / lanes
      self.vectors = vectors
      masks = LaneMaskTables.shared.table(for: [1, height, width], count: vectors * 9) { masks in
        for v in 0..<vectors {
          for t in 0..<9 {
            var mask = WideLaneMask(repeating: 0)
            for l in 0..<lanes {
              let q = v * lanes + l
              let (y, x) = q.quotientAndRemainder(dividingBy: width)
              let (ty, tx) = (y + t / 3 - 1, x + t % 3 - 1)
              let inside = q < height * width && ty >= 0 && ty < height && tx >= 0 && tx < width
              mask[l] = inside ? -1 : 0
            }
            masks[v * 9 + t] = mask
          }
        }
      }
    }

    /// Nothing to free: the masks belong to ``LaneMaskTables``.
    func deallocate() {}
  }

  /// The lane mask tables of the flat kernels, made once per plane shape and kept for the
  /// process (a few kilobytes each): made per call, they cost a batch-1 forward pass of
  /// ShuffleNetV2 2.5% of its time.
  final class LaneMaskTables: @unchecked Sendable {
    static let shared = LaneMaskTables()
    private var tables: [[Int]: UnsafeMutablePointer<WideLaneMask>] = [:]
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    /// The table of `count` masks for `key`, filled by `make` the first time.
    func table(
      for key: [Int], count: Int, make: (UnsafeMutablePointer<WideLaneMask>) -> Void
    ) -> UnsafePointer<WideLaneMask> {
      pthread_mutex_lock(&lock)
      defer { pthread_mutex_unlock(&lock) }
      if let table = tables[key] { return UnsafePointer(table) }
      let table = UnsafeMutablePointer<WideLaneMask>.allocate(capacity: max(count, 1))
      make(table)
      tables[key] = table
      return UnsafePointer(table)
    }
  }

  /// Runs `body` on the plane at `p` (of `taps.plane` floats inside `[start, end)`) where every
  /// tap of every vector may be read: in place when the reach around it lies inside, else from
  /// a copy in `scratch` (``FlatTaps/scratchCount`` floats, zero around the copy).
  @inline(__always)
  static func readablePlane<R>(
    _ p: UnsafePointer<Float>, start: UnsafePointer<Float>, end: UnsafePointer<Float>,
    taps: FlatTaps, scratch: UnsafeMutablePointer<Float>, _ body: (UnsafePointer<Float>) -> R
  ) -> R {
    let span = taps.vectors * WideFloat.scalarCount
    if p - taps.reach >= start && p + span + taps.reach <= end { return body(p) }
    let copy = scratch + taps.reach
    copy.update(from: p, count: taps.plane)
    return body(UnsafePointer(copy))
  }

  /// A worker's scratch for ``readablePlane(_:start:end:taps:scratch:_:)``, zeroed.
  static func flatScratch(_ taps: FlatTaps) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: taps.scratchCount)
    p.update(repeating: 0, count: taps.scratchCount)
    return p
  }

  /// `out = bias + sum over taps of w[t] * src[q + offset(t)]` over one flat plane. The lanes of
  /// `out`'s last vector past the plane are written back as they were when `mayOverrun`
  /// (``partialVectorFits(plane:following:)``), else the vector is stored lane by lane.
  @inline(__always)
  static func flatCorrelate(
    _ src: UnsafePointer<Float>, taps: FlatTaps, weights w: UnsafePointer<Float>, bias: Float,
    output out: UnsafeMutablePointer<Float>, mayOverrun: Bool
  ) {
    let lanes = WideFloat.scalarCount
    let width = taps.width
    let (w0, w1, w2, w3, w4, w5, w6, w7, w8) = broadcastTaps(w)
    let b = WideFloat(repeating: bias)
    // One vector of outputs: three chains of three taps (one per filter row). The centre tap
    // needs no mask: its lanes past the plane are never stored.
    @inline(__always) func vector(_ v: Int) -> WideFloat {
      let (q, m) = (src + v * lanes, taps.masks + v * 9)
      var a0 = b.plusProduct(masked(loadWide(q - width - 1), m[0]), w0)
      var a1 = loadWide(q) * w4
      var a2 = masked(loadWide(q + width - 1), m[6]) * w6
      a0 = a0.plusProduct(masked(loadWide(q - width), m[1]), w1)
      a1 = a1.plusProduct(masked(loadWide(q - 1), m[3]), w3)
      a2 = a2.plusProduct(masked(loadWide(q + width), m[7]), w7)
      a0 = a0.plusProduct(masked(loadWide(q - width + 1), m[2]), w2)
      a1 = a1.plusProduct(masked(loadWide(q + 1), m[5]), w5)
      a2 = a2.plusProduct(masked(loadWide(q + width + 1), m[8]), w8)
      return a0 + a1 + a2
    }
    storeFlatPlane(out, count: taps.plane, mayOverrun: mayOverrun, vector)
  }

  /// The nine taps of a 3x3 filter, each in every lane of a vector.
  @inline(__always)
  static func broadcastTaps(_ w: UnsafePointer<Float>) -> (
    WideFloat, WideFloat, WideFloat, WideFloat, WideFloat, WideFloat, WideFloat, WideFloat,
    WideFloat
  ) {
    (
      WideFloat(repeating: w[0]), WideFloat(repeating: w[1]), WideFloat(repeating: w[2]),
      WideFloat(repeating: w[3]), WideFloat(repeating: w[4]), WideFloat(repeating: w[5]),
      WideFloat(repeating: w[6]), WideFloat(repeating: w[7]), WideFloat(repeating: w[8])
    )
  }

  /// Stores `vector(v)` for every vector of a flat plane of `count` floats at `out`; the last,
  /// partial one with its lanes past the plane written back as they were when `mayOverrun`
  /// (``partialVectorFits(plane:following:)``), else lane by lane.
  @inline(__always)
  static func storeFlatPlane(
    _ out: UnsafeMutablePointer<Float>, count: Int, mayOverrun: Bool,
    _ vector: (Int) -> WideFloat
  ) {
    let lanes = WideFloat.scalarCount
    let (whole, left) = count.quotientAndRemainder(dividingBy: lanes)
    for v in 0..<whole { storeWide(vector(v), out + v * lanes) }
    if left == 0 { return }
    let last = vector(whole)
    let dst = out + whole * lanes
    if mayOverrun {
      storeWide(last, dst, keeping: wideLaneMask(keepingFirst: left))
    } else {
      for l in 0..<left { dst[l] = last[l] }
    }
  }

  /// Adds to `sums[t]` (nine vectors) the lanes of `sum over q of dy[q] * x[q + offset(t)]` over
  /// one flat plane; `x` and `dy` readable a vector past the plane (``readablePlane``).
  @inline(__always)
  static func flatAccumulateWeightGradient(
    _ x: UnsafePointer<Float>, dy: UnsafePointer<Float>, taps: FlatTaps,
    sums: UnsafeMutablePointer<WideFloat>
  ) {
    let lanes = WideFloat.scalarCount
    let width = taps.width
    var s0 = sums[0]
    var s1 = sums[1]
    var s2 = sums[2]
    var s3 = sums[3]
    var s4 = sums[4]
    var s5 = sums[5]
    var s6 = sums[6]
    var s7 = sums[7]
    var s8 = sums[8]
    for v in 0..<taps.vectors {
      let (q, m) = (x + v * lanes, taps.masks + v * 9)
      // The centre tap's mask keeps the lanes inside the plane: past it, x and dy hold other
      // planes' values (a NaN there times a cleared lane would still be NaN), so dy is masked.
      let g = masked(loadWide(dy + v * lanes), m[4])
      s0 = s0.plusProduct(masked(loadWide(q - width - 1), m[0]), g)
      s1 = s1.plusProduct(masked(loadWide(q - width), m[1]), g)
      s2 = s2.plusProduct(masked(loadWide(q - width + 1), m[2]), g)
      s3 = s3.plusProduct(masked(loadWide(q - 1), m[3]), g)
      s4 = s4.plusProduct(masked(loadWide(q), m[4]), g)
      s5 = s5.plusProduct(masked(loadWide(q + 1), m[5]), g)
      s6 = s6.plusProduct(masked(loadWide(q + width - 1), m[6]), g)
      s7 = s7.plusProduct(masked(loadWide(q + width), m[7]), g)
      s8 = s8.plusProduct(masked(loadWide(q + width + 1), m[8]), g)
    }
    (sums[0], sums[1], sums[2], sums[3]) = (s0, s1, s2, s3)
    (sums[4], sums[5], sums[6], sums[7], sums[8]) = (s4, s5, s6, s7, s8)
  }

  /// ``forward(_:input:weight:bias:output:)`` of a layer that ``runsFlat(_:)``.
  static func flatForward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>
  ) {
    let taps = FlatTaps(height: g.height, width: g.width)
    defer { taps.deallocate() }
    let (channels, plane) = (g.inChannels, taps.plane)
    let items = g.batch * channels
    let xEnd = x + items * plane
    Parallel.forRanges(items, minimumChunk: max(1, 8192 / plane)) { range in
      let scratch = flatScratch(taps)
      defer { scratch.deallocate() }
      for item in range {
        let c = item % channels
        readablePlane(x + item * plane, start: x, end: xEnd, taps: taps, scratch: scratch) {
          src in
          flatCorrelate(
            src, taps: taps, weights: weight + c * 9, bias: bias?[c] ?? 0,
            output: y + item * plane,
            mayOverrun: partialVectorFits(plane: plane, following: range.upperBound - item - 1))
        }
      }
    }
  }

  /// Planes of at most this many vectors run their backward as two passes: the input gradient
  /// by the forward kernel, the weight gradient channel by channel
  /// (``flatWeightGradient(_:input:outputGrad:weightGrad:)``). Batch 128, `acon bench-op
  /// --split --best`, two rounds alternating: backward 0.30-0.33 -> 0.20-0.22 ms on 4x4 planes
  /// (96 channels), 0.34-0.35 -> 0.26-0.30 on 7x7 (48); no faster on 14x14 (13 vectors), and
  /// slower on 28x28, whose second pass over `dy` comes from memory.
  static let flatWeightGradientByChannelVectors = 8

  /// ``backward(_:input:weight:outputGrad:inputGrad:weightGrad:)`` of a layer that
  /// ``runsFlat(_:)``. The input gradient is the correlation of `dy` with the flipped filter
  /// (same padding, same masks): on planes of up to ``flatWeightGradientByChannelVectors``
  /// vectors the forward kernel's, with the weight gradient channel by channel; larger planes
  /// run both in one pass (``flatBackwardByPlanes(_:input:weight:outputGrad:inputGrad:weightGrad:)``).
  static func flatBackward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?
  ) {
    let vectors = (g.height * g.width + WideFloat.scalarCount - 1) / WideFloat.scalarCount
    if vectors > flatWeightGradientByChannelVectors {
      flatBackwardByPlanes(
        g, input: x, weight: weight, outputGrad: dy, inputGrad: dx, weightGrad: dw)
      return
    }
    if let dx {
      let flipped = flippedFilters(weight, channels: g.inChannels, taps: 9)
      defer { flipped.deallocate() }
      flatForward(g, input: dy, weight: flipped, bias: nil, output: dx)
    }
    if let dw { flatWeightGradient(g, input: x, outputGrad: dy, weightGrad: dw) }
  }

  /// ``flatBackward(_:input:weight:outputGrad:inputGrad:weightGrad:)`` on planes of more than
  /// ``flatWeightGradientByChannelVectors`` vectors, in one pass over `dy`: each worker takes a
  /// contiguous run of planes, writes each plane's input gradient and adds its weight
  /// gradient's lane sums to its channel's, folded into Float64 every few images; the workers'
  /// sums are added in worker order.
  static func flatBackwardByPlanes(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?
  ) {
    let taps = FlatTaps(height: g.height, width: g.width)
    let channels = g.inChannels
    let plane = taps.plane
    let items = g.batch * channels
    let (xEnd, dyEnd) = (x + items * plane, dy + items * plane)
    let flipped = flippedFilters(weight, channels: channels, taps: 9)
    defer {
      taps.deallocate()
      flipped.deallocate()
    }
    forEachWorkerPlane(
      items: items, channels: channels, plane: plane, weightGrad: dw, scratch: 2 * taps.scratchCount
    ) { item, following, lanesSums, scratch in
      let c = item % channels
      readablePlane(
        dy + item * plane, start: dy, end: dyEnd, taps: taps, scratch: scratch + taps.scratchCount
      ) { gp in
        if let dx {
          flatCorrelate(
            gp, taps: taps, weights: flipped + c * 9, bias: 0, output: dx + item * plane,
            mayOverrun: partialVectorFits(plane: plane, following: following))
        }
        if let lanesSums {
          readablePlane(x + item * plane, start: x, end: xEnd, taps: taps, scratch: scratch) {
            xp in
            flatAccumulateWeightGradient(xp, dy: gp, taps: taps, sums: lanesSums + c * 9)
          }
        }
      }
    }
  }

  /// `dw[c][t] = sum over images and positions of dy * x at tap t`, for a layer that
  /// ``runsFlat(_:)``, on ``forEachChannelPlane(batch:channels:vectors:weightGrad:scratch:_:)``.
  /// (The stride-2 layers keep the plane-by-plane frame: their backward split each input plane
  /// into phases either way, and channel by channel it ran 10-20% slower on 7x7 inputs.)
  static func flatWeightGradient(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    weightGrad dw: UnsafeMutablePointer<Float>
  ) {
    let taps = FlatTaps(height: g.height, width: g.width)
    let plane = taps.plane
    let items = g.batch * g.inChannels
    let (xEnd, dyEnd) = (x + items * plane, dy + items * plane)
    forEachChannelPlane(
      batch: g.batch, channels: g.inChannels, vectors: taps.vectors, weightGrad: dw,
      scratch: 2 * taps.scratchCount
    ) { item, lanes, scratch in
      let o = item * plane
      readablePlane(
        dy + o, start: dy, end: dyEnd, taps: taps, scratch: scratch + taps.scratchCount
      ) { gp in
        readablePlane(x + o, start: x, end: xEnd, taps: taps, scratch: scratch) { xp in
          flatAccumulateWeightGradient(xp, dy: gp, taps: taps, sums: lanes)
        }
      }
    }
  }

  /// The frame of a depthwise weight gradient computed channel by channel: each worker takes
  /// whole channels and calls `body(item, lanes, scratch)` on a channel's planes image by image,
  /// `body` adding the plane's nine sums to the nine vectors at `lanes`, a buffer of the
  /// worker's own that stays in L1; they go into Float64 every few images (about 128 vectors
  /// of `vectors` per plane in each lane between folds), and each weight is computed by one
  /// worker in a fixed order, whatever the number of workers. `scratch` is `scratch` zeroed
  /// floats of the worker's own. (Plane by plane across the channels, as
  /// ``forEachWorkerPlane(items:channels:plane:weightGrad:scratch:_:)`` goes, every channel's
  /// nine sums, 576 bytes, went out to the cache and back with each plane: on 4x4 to 14x14
  /// planes their stores took a quarter of the backward pass.)
  static func forEachChannelPlane(
    batch: Int, channels: Int, vectors: Int, weightGrad dw: UnsafeMutablePointer<Float>,
    scratch scratchCount: Int,
    _ body: (
      _ item: Int, _ lanes: UnsafeMutablePointer<WideFloat>, _ scratch: UnsafeMutablePointer<Float>
    ) -> Void
  ) {
    let imagesPerFold = max(1, 128 / max(1, vectors))
    let chunk = max(1, 2048 / max(1, batch * vectors))
    Parallel.forRanges(channels, minimumChunk: chunk) { range in
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
      scratch.update(repeating: 0, count: scratchCount)
      let lanes = UnsafeMutablePointer<WideFloat>.allocate(capacity: 9)
      let totals = UnsafeMutablePointer<Double>.allocate(capacity: 9)
      defer {
        scratch.deallocate()
        lanes.deallocate()
        totals.deallocate()
      }
      for c in range {
        totals.initialize(repeating: 0, count: 9)
        for first in stride(from: 0, to: batch, by: imagesPerFold) {
          lanes.initialize(repeating: WideFloat(repeating: 0), count: 9)
          for n in first..<min(batch, first + imagesPerFold) {
            body(n * channels + c, lanes, scratch)
          }
          for t in 0..<9 { totals[t] += LaneSums.reduced(lanes[t]) }
        }
        for t in 0..<9 { dw[c * 9 + t] = Float(totals[t]) }
      }
    }
  }

  /// The backward passes' common frame: each of up to ``Parallel/workers`` workers takes a
  /// contiguous run of the `items` (image, channel) planes and calls `body(item, following,
  /// lanesSums, scratch)` on each in order, `following` the planes after it in the run. When
  /// `weightGrad` is wanted, `lanesSums` holds nine vectors per channel that `body` adds the
  /// weight gradient's lanes to; they go into Float64 every 8 images (at most that many planes
  /// of a channel in a lane) and at the end, and the workers' sums are added in worker order
  /// into `weightGrad`. `scratch` is `scratch` zeroed floats of the worker's own.
  static func forEachWorkerPlane(
    items: Int, channels: Int, plane: Int, weightGrad dw: UnsafeMutablePointer<Float>?,
    scratch scratchCount: Int,
    _ body: (
      _ item: Int, _ following: Int, _ lanesSums: UnsafeMutablePointer<WideFloat>?,
      _ scratch: UnsafeMutablePointer<Float>
    ) -> Void
  ) {
    let chunks = max(1, min(Parallel.workers, items / max(1, 2048 / plane)))
    let partial = UnsafeMutablePointer<Double>.allocate(capacity: chunks * channels * 9)
    partial.update(repeating: 0, count: chunks * channels * 9)
    defer { partial.deallocate() }
    let imagesPerFold = 8
    Parallel.forEach(chunks) { chunk in
      let mine = (items * chunk / chunks)..<(items * (chunk + 1) / chunks)
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
      scratch.update(repeating: 0, count: scratchCount)
      let lanesSums = UnsafeMutablePointer<WideFloat>.allocate(capacity: channels * 9)
      lanesSums.initialize(repeating: WideFloat(repeating: 0), count: channels * 9)
      defer {
        scratch.deallocate()
        lanesSums.deallocate()
      }
      let sums = partial + chunk * channels * 9
      func fold() {
        for i in 0..<(channels * 9) {
          sums[i] += LaneSums.reduced(lanesSums[i])
          lanesSums[i] = WideFloat(repeating: 0)
        }
      }
      var folded = mine.lowerBound
      for item in mine {
        body(item, mine.upperBound - item - 1, dw == nil ? nil : lanesSums, scratch)
        if dw != nil && item + 1 - folded >= imagesPerFold * channels {
          fold()
          folded = item + 1
        }
      }
      if dw != nil { fold() }
    }
    if let dw {
      for i in 0..<(channels * 9) {
        var total = 0.0
        for chunk in 0..<chunks { total += partial[chunk * channels * 9 + i] }
        dw[i] = Float(total)
      }
    }
  }
}
