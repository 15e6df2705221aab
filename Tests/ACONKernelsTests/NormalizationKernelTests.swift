import ACONKernels
import Testing

@Suite("Batch-norm, pooling and dropout kernels")
struct NormalizationKernelTests {
  /// Deterministic pseudo-random floats in [-1, 1).
  static func values(_ count: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<count).map { _ in
      s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Float(s >> 40) / Float(1 << 23) - 1
    }
  }

  /// `BatchNormKernel.statistics` of `x` (`[batch, channels, plane]`): mean and variance.
  static func kernelStatistics(
    _ x: [Float], batch: Int, channels: Int, plane: Int
  ) -> (mean: [Float], variance: [Float]) {
    var mean = [Float](repeating: 0, count: channels)
    var variance = [Float](repeating: 0, count: channels)
    BatchNormKernel.statistics(
      x, batch: batch, channels: channels, plane: plane, mean: &mean, variance: &variance)
    return (mean, variance)
  }

  /// One channel's mean and biased variance in Float64, the two-pass way.
  static func exactStatistics(
    _ x: [Float], batch: Int, channels: Int, plane: Int, channel: Int
  ) -> (mean: Double, variance: Double) {
    var values: [Double] = []
    for b in 0..<batch {
      for i in 0..<plane { values.append(Double(x[(b * channels + channel) * plane + i])) }
    }
    let m = values.reduce(0, +) / Double(values.count)
    return (m, values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count))
  }

  @Test func statisticsAreAccurateForLargeMeansAndSplitAcrossCores() {
    // 16 channels of 8 x 512 values: enough for the channel loop to run in two chunks.
    let (n, c, plane) = (8, 16, 512)
    var x = Self.values(n * c * plane, seed: 1)
    for i in x.indices { x[i] = 10_000 + x[i] * Float((i / plane) % c + 1) * 0.01 }
    let (mean, variance) = Self.kernelStatistics(x, batch: n, channels: c, plane: plane)
    for ch in 0..<c {
      let (m, v) = Self.exactStatistics(x, batch: n, channels: c, plane: plane, channel: ch)
      #expect(abs(Double(mean[ch]) - m) < 1e-3)
      #expect(abs(Double(variance[ch]) - v) <= 1e-3 * v, "channel \(ch): \(variance[ch]) vs \(v)")
    }
  }

  /// The provisional mean is the first image's plane mean: a first image far from the others
  /// (here a thousand times their spread) must not cost the variance its precision, on planes
  /// of whole vectors, with a partial vector, and of one value ([N, C] input); and on small
  /// planes of many channels, which the kernels visit in blocks of channels a few images at a
  /// time (the last block and the last group of images partial).
  @Test(arguments: [(8, 3, 64), (8, 3, 13), (8, 3, 1), (6, 171, 49), (5, 520, 16)])
  func statisticsAreAccurateWhenTheFirstImageIsFarFromTheMean(
    _ n: Int, _ c: Int, _ plane: Int
  ) {
    var x = Self.values(n * c * plane, seed: 7)
    for i in 0..<(c * plane) { x[i] += 1000 }
    let (mean, variance) = Self.kernelStatistics(x, batch: n, channels: c, plane: plane)
    for ch in 0..<c {
      let (m, v) = Self.exactStatistics(x, batch: n, channels: c, plane: plane, channel: ch)
      #expect(abs(Double(mean[ch]) - m) <= 1e-6 * abs(m), "channel \(ch): \(mean[ch]) vs \(m)")
      #expect(abs(Double(variance[ch]) - v) <= 1e-5 * v, "channel \(ch): \(variance[ch]) vs \(v)")
    }
  }

  /// Plane 13: a vector body plus a scalar tail; 7x7 and 4x4 planes of 171 and 520 channels:
  /// blocks of channels a few images at a time. With `relu`, the ReLU fused after the batch
  /// norm (and its gate in the backward); with `residual`, a shortcut added before it.
  @Test(arguments: [(3, 5, 13), (6, 171, 49), (5, 520, 16)], [false, true])
  func normalizeAndBackwardAgreeWithScalarFormulas(
    _ geometry: (Int, Int, Int), _ relu: Bool
  ) {
    let (n, c, plane) = geometry
    let count = n * c * plane
    let x = Self.values(count, seed: 2)
    let dy = Self.values(count, seed: 3)
    let residual = Self.values(count, seed: 6)
    let weight = Self.values(c, seed: 4)
    let bias = Self.values(c, seed: 5)
    var mean = [Float](repeating: 0, count: c)
    var variance = [Float](repeating: 0, count: c)
    BatchNormKernel.statistics(
      x, batch: n, channels: c, plane: plane, mean: &mean, variance: &variance)
    let invStd = variance.map { 1 / ($0 + 1e-5).squareRoot() }
    var y = [Float](repeating: 0, count: count)
    BatchNormKernel.normalize(
      x, &y, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd, weight: weight,
      bias: bias, relu: relu)
    var withResidual = [Float](repeating: 0, count: count)
    BatchNormKernel.normalize(
      x, &withResidual, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd,
      weight: weight, bias: bias, relu: relu, residual: residual)
    var dx = [Float](repeating: 0, count: count)
    var dw = [Float](repeating: 0, count: c)
    var db = [Float](repeating: 0, count: c)
    BatchNormKernel.backwardTraining(
      x, dy, dx: &dx, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd,
      weight: weight, bias: bias, relu: relu, dweight: &dw, dbias: &db)
    let m = Double(n * plane)
    var worst = (y: 0.0, residual: 0.0, sums: 0.0, dx: 0.0)
    for ch in 0..<c {
      var sumDy = 0.0
      var sumDyXhat = 0.0
      // The upstream gradient gated by the fused ReLU (which passes where its input is > 0).
      func gated(_ k: Int, _ z: Double) -> Double { relu && z <= 0 ? 0 : Double(dy[k]) }
      for b in 0..<n {
        for i in 0..<plane {
          let k = (b * c + ch) * plane + i
          let xhat = Double(x[k] - mean[ch]) * Double(invStd[ch])
          let z = xhat * Double(weight[ch]) + Double(bias[ch])
          worst.y = max(worst.y, abs(Double(y[k]) - (relu ? max(0, z) : z)))
          let zr = z + Double(residual[k])
          worst.residual = max(
            worst.residual, abs(Double(withResidual[k]) - (relu ? max(0, zr) : zr)))
          sumDy += gated(k, Double(y[k]))
          sumDyXhat += gated(k, Double(y[k])) * xhat
        }
      }
      worst.sums = max(worst.sums, abs(Double(db[ch]) - sumDy), abs(Double(dw[ch]) - sumDyXhat))
      for b in 0..<n {
        for i in 0..<plane {
          let k = (b * c + ch) * plane + i
          let xhat = Double(x[k] - mean[ch]) * Double(invStd[ch])
          let expected =
            Double(weight[ch]) * Double(invStd[ch])
            * (gated(k, Double(y[k])) - sumDy / m - xhat * sumDyXhat / m)
          worst.dx = max(worst.dx, abs(Double(dx[k]) - expected))
        }
      }
    }
    #expect(worst.y < 1e-5 && worst.residual < 1e-5, "\(geometry) \(worst)")
    #expect(worst.sums < 1e-4, "\(geometry) \(worst)")
    #expect(worst.dx < 1e-4, "\(geometry) \(worst)")
    // The same input gradient from the sums alone (a data-parallel step's path).
    var fromSums = [Float](repeating: 0, count: count)
    BatchNormKernel.inputGradientFromSums(
      x, dy, dx: &fromSums, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd,
      weight: weight, bias: bias, relu: relu, sumDy: db, sumDyXhat: dw, count: n * plane)
    let fromSumsError = zip(fromSums, dx).map { abs($0 - $1) }.max() ?? 0
    #expect(fromSumsError < 1e-6, "\(geometry) from sums: \(fromSumsError)")
    // Evaluation-mode backward: dx = dy * weight * invStd; outputs may be skipped.
    BatchNormKernel.backwardEval(
      x, dy, dx: &dx, batch: n, channels: c, plane: plane, mean: mean, invStd: invStd,
      weight: weight, bias: bias, relu: false, dweight: nil, dbias: nil)
    for k in 0..<count {
      let ch = (k / plane) % c
      #expect(abs(dx[k] - dy[k] * weight[ch] * invStd[ch]) < 1e-6)
    }
  }

  @Test func poolGeometryFollowsPyTorch() {
    let g = PoolGeometry(height: 112, width: 111, kernel: 3, stride: 2, padding: 1)
    #expect(g.outputHeight == 56)
    #expect(g.outputWidth == 56)
    #expect(PoolGeometry(height: 7, width: 7, kernel: 2, stride: 2, padding: 0).outputHeight == 3)
  }

  @Test func maxPoolAcrossCoresMatchesNaive() {
    // 32 planes of 32 x 32: two parallel chunks.
    let planes = 32
    let g = PoolGeometry(height: 32, width: 32, kernel: 3, stride: 2, padding: 1)
    let x = Self.values(planes * 1024, seed: 6)
    let outCount = planes * g.outputHeight * g.outputWidth
    var y = [Float](repeating: 0, count: outCount)
    var indices = [Int32](repeating: 0, count: outCount)
    PoolingKernel.maxForward(x, &y, indices: &indices, planes: planes, geometry: g)
    for p in 0..<planes {
      for i in 0..<16 {
        for j in 0..<16 {
          var best = -Float.infinity
          for r in (2 * i - 1)...(2 * i + 1) where r >= 0 && r < 32 {
            for q in (2 * j - 1)...(2 * j + 1) where q >= 0 && q < 32 {
              best = max(best, x[p * 1024 + r * 32 + q])
            }
          }
          let o = p * 256 + i * 16 + j
          #expect(y[o] == best)
          #expect(x[p * 1024 + Int(indices[o])] == best)
        }
      }
    }
    var dx = [Float](repeating: 1, count: x.count)
    PoolingKernel.maxBackward(
      [Float](repeating: 1, count: outCount), indices: indices, &dx, planes: planes, geometry: g)
    #expect(dx.reduce(0, +) == Float(outCount))
  }

  /// The inference max pool (no positions kept, a ``WideFloat`` of columns at a time) gives
  /// the values of the training one: strides 1 and 2, windows 2 and 3, with and without
  /// padding, rows around one and two vectors of outputs (the vector path's edges), NaN inputs.
  @Test(arguments: [
    (35, 35, 3, 2, 1), (112, 112, 3, 2, 1), (33, 66, 3, 2, 1), (34, 64, 3, 2, 1),
    (9, 31, 3, 1, 1), (5, 17, 3, 1, 0), (8, 40, 2, 2, 0), (6, 65, 3, 2, 0), (4, 3, 3, 1, 1),
  ])
  func maxPoolWithoutIndicesMatchesTraining(_ shape: (Int, Int, Int, Int, Int)) {
    let (h, w, k, s, pad) = shape
    let planes = 5
    let g = PoolGeometry(height: h, width: w, kernel: k, stride: s, padding: pad)
    var x = Self.values(planes * h * w, seed: UInt64(40 + h + w))
    x[3 * h * w + (h / 2) * w + w / 2] = .nan
    x[w - 1] = .nan
    let outCount = planes * g.outputHeight * g.outputWidth
    var trained = [Float](repeating: 0, count: outCount)
    var indices = [Int32](repeating: 0, count: outCount)
    PoolingKernel.maxForward(x, &trained, indices: &indices, planes: planes, geometry: g)
    var inferred = [Float](repeating: 0, count: outCount)
    PoolingKernel.maxForward(x, &inferred, planes: planes, geometry: g)
    #expect(trained.contains { $0.isNaN })
    for o in 0..<outCount {
      #expect(inferred[o] == trained[o] || (inferred[o].isNaN && trained[o].isNaN), "output \(o)")
    }
  }

  @Test func maxPoolPropagatesNaN() {
    let g = PoolGeometry(height: 2, width: 2, kernel: 2, stride: 2, padding: 0)
    var y: [Float] = [0]
    var indices: [Int32] = [0]
    PoolingKernel.maxForward([1, .nan, 3, 2], &y, indices: &indices, planes: 1, geometry: g)
    #expect(y[0].isNaN)
    #expect(indices[0] == 1)
  }

  @Test func averageBackwardIsTheAdjointOfForward() {
    // <avg(x), g> == <x, avgBackward(g)> for any x, g.
    let planes = 3
    let g = PoolGeometry(height: 9, width: 7, kernel: 3, stride: 2, padding: 1)
    let x = Self.values(planes * 63, seed: 7)
    let outCount = planes * g.outputHeight * g.outputWidth
    let dy = Self.values(outCount, seed: 8)
    var y = [Float](repeating: 0, count: outCount)
    PoolingKernel.averageForward(x, &y, planes: planes, geometry: g)
    var dx = [Float](repeating: 0, count: x.count)
    PoolingKernel.averageBackward(dy, &dx, planes: planes, geometry: g)
    let left = zip(y, dy).map { Double($0) * Double($1) }.reduce(0, +)
    let right = zip(x, dx).map { Double($0) * Double($1) }.reduce(0, +)
    #expect(abs(left - right) < 1e-4)
  }

  @Test func dropoutMaskIsDeterministicAndHasTheRightRate() {
    let count = 64 * 600 + 13
    let words = DropoutKernel.maskWords(count)
    #expect(words == 601)
    var a = [UInt64](repeating: 0, count: words)
    var b = [UInt64](repeating: 0, count: words)
    DropoutKernel.makeMask(&a, count: count, probability: 0.2, seed: 42)
    DropoutKernel.makeMask(&b, count: count, probability: 0.2, seed: 42)
    #expect(a == b)
    // A mask over a prefix agrees with the start of the long one (nothing depends on the split).
    var prefix = [UInt64](repeating: 0, count: 3)
    DropoutKernel.makeMask(&prefix, count: 150, probability: 0.2, seed: 42)
    #expect(prefix[0] == a[0] && prefix[1] == a[1] && prefix[2] == a[2] & ((1 << 22) - 1))
    var other = [UInt64](repeating: 0, count: words)
    DropoutKernel.makeMask(&other, count: count, probability: 0.2, seed: 43)
    #expect(other != a)
    // Neighbouring bits are independent: both kept about 0.64 of the time.
    var pairs = 0
    for word in a { pairs += (word & (word >> 1) & 0x5555_5555_5555_5555).nonzeroBitCount }
    #expect(abs(Double(pairs) / Double(count / 2) - 0.64) < 0.015)
    // No bit beyond the last element.
    #expect(a[words - 1] >> 13 == 0)
    let kept = a.map { $0.nonzeroBitCount }.reduce(0, +)
    #expect(abs(Double(kept) / Double(count) - 0.8) < 0.01)

    // Apply: the vector path and the tail agree with the bits.
    let x = Self.values(count, seed: 9)
    var y = [Float](repeating: 0, count: count)
    DropoutKernel.apply(x, mask: a, scale: 1.25, &y, count: count)
    for i in 0..<count {
      let keep = (a[i / 64] >> UInt64(i % 64)) & 1 == 1
      #expect(y[i] == (keep ? x[i] * 1.25 : 0))
    }
  }
}
