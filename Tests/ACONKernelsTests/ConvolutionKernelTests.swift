import ACONKernels
import Testing

/// Direct seven-loop convolution in Float64: the definition the fast paths are checked against.
struct ReferenceConvolution {
  let g: ConvGeometry

  func index(_ n: Int, _ c: Int, _ y: Int, _ x: Int, _ channels: Int, _ h: Int, _ w: Int) -> Int {
    ((n * channels + c) * h + y) * w + x
  }

  /// Visits every (output, weight, input) triple that contributes a product.
  func forEachTap(_ body: (_ out: Int, _ weight: Int, _ input: Int) -> Void) {
    let (cinG, coutG) = (g.inChannelsPerGroup, g.outChannelsPerGroup)
    for n in 0..<g.batch {
      for co in 0..<g.outChannels {
        let group = co / coutG
        for oy in 0..<g.outHeight {
          for ox in 0..<g.outWidth {
            let o = index(n, co, oy, ox, g.outChannels, g.outHeight, g.outWidth)
            for ci in 0..<cinG {
              for i in 0..<g.kernelHeight {
                for j in 0..<g.kernelWidth {
                  let iy = oy * g.stride - g.padding + i * g.dilation
                  let ix = ox * g.stride - g.padding + j * g.dilation
                  if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                  let w = ((co * cinG + ci) * g.kernelHeight + i) * g.kernelWidth + j
                  let x = index(n, group * cinG + ci, iy, ix, g.inChannels, g.height, g.width)
                  body(o, w, x)
                }
              }
            }
          }
        }
      }
    }
  }

  func forward(_ x: [Float], _ w: [Float], _ b: [Float]?) -> [Double] {
    let spatial = g.outHeight * g.outWidth
    var y = [Double](repeating: 0, count: g.batch * g.outChannels * spatial)
    if let b {
      for i in 0..<y.count { y[i] = Double(b[(i / spatial) % g.outChannels]) }
    }
    forEachTap { o, wi, xi in y[o] += Double(w[wi]) * Double(x[xi]) }
    return y
  }

  func backward(_ x: [Float], _ w: [Float], _ dy: [Float]) -> (
    dx: [Double], dw: [Double], db: [Double]
  ) {
    var dx = [Double](repeating: 0, count: x.count)
    var dw = [Double](repeating: 0, count: w.count)
    var db = [Double](repeating: 0, count: g.outChannels)
    let spatial = g.outHeight * g.outWidth
    for i in 0..<dy.count { db[(i / spatial) % g.outChannels] += Double(dy[i]) }
    forEachTap { o, wi, xi in
      dx[xi] += Double(w[wi]) * Double(dy[o])
      dw[wi] += Double(x[xi]) * Double(dy[o])
    }
    return (dx, dw, db)
  }

  /// Each result's sum of its terms' magnitudes: the forward and backward sums over `|x|`,
  /// `|w|`, `|b|` and `|dy|`. A float sum's rounding grows with that sum and with the length of
  /// its chains, not with the result (a small difference of large sums can be near zero), so the
  /// kernels' errors are measured against it. A build with 8-float vectors chains twice as
  /// many terms per lane as one with 16: its weight gradients read 1-2e-5 of `1 + |result|`
  /// where the 16-lane build's read under 1e-5, and both about 4e-8 of `1 +` these sums.
  func magnitudes(_ x: [Float], _ w: [Float], _ b: [Float]?, _ dy: [Float]) -> (
    y: [Double], dx: [Double], dw: [Double], db: [Double]
  ) {
    let size = { (v: [Float]) in v.map { abs($0) } }
    let backward = self.backward(size(x), size(w), size(dy))
    return (forward(size(x), size(w), b.map(size)), backward.dx, backward.dw, backward.db)
  }
}

/// A small deterministic generator so the kernel tests need nothing but the kernels.
struct Lcg {
  var state: UInt64
  mutating func next() -> Float {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
  }
  mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

func worstError(_ a: [Float], _ b: [Double]) -> Double {
  worstError(a, b, magnitudes: b)
}

/// The largest `|a - b| / (1 + |magnitude|)`, infinite where `a` was never written.
func worstError(_ a: [Float], _ b: [Double], magnitudes: [Double]) -> Double {
  var worst = 0.0
  if a.count != b.count || a.count != magnitudes.count { return .infinity }
  for i in a.indices {
    let e = abs(Double(a[i]) - b[i]) / (1 + abs(magnitudes[i]))
    if e.isNaN { return .infinity }  // an element never written
    worst = max(worst, e)
  }
  return worst
}

/// Runs the kernels for `g` and compares every output and gradient with the reference, each
/// error relative to `1 +` the sum of its terms' magnitudes (``ReferenceConvolution/magnitudes(_:_:_:_:)``).
func checkAgainstReference(
  _ g: ConvGeometry, bias: Bool, seed: UInt64, tolerance: Double = 2e-6
) -> [String] {
  var rng = Lcg(state: seed)
  let x = rng.array(g.batch * g.inChannels * g.height * g.width)
  let w = rng.array(g.outChannels * g.patchSize)
  let b = bias ? rng.array(g.outChannels) : nil
  let dy = rng.array(g.batch * g.outChannels * g.outHeight * g.outWidth)
  let reference = ReferenceConvolution(g: g)
  let expectedY = reference.forward(x, w, b)
  let expected = reference.backward(x, w, dy)
  let sizes = reference.magnitudes(x, w, b, dy)
  var y = [Float](repeating: .nan, count: dy.count)
  var dx = [Float](repeating: .nan, count: x.count)
  var dw = [Float](repeating: .nan, count: w.count)
  var db = [Float](repeating: .nan, count: g.outChannels)
  var workspace = [Float](
    repeating: .nan,
    count: max(
      1, ConvolutionKernel.forwardWorkspaceCount(g), ConvolutionKernel.backwardWorkspaceCount(g)))
  workspace.withUnsafeMutableBufferPointer { ws in
    ConvolutionKernel.forward(
      g, input: x, weight: w, bias: b, output: &y, workspace: ws.baseAddress!)
    ConvolutionKernel.backward(
      g, input: x, weight: w, outputGrad: dy, inputGrad: &dx, weightGrad: &dw, biasGrad: &db,
      workspace: ws.baseAddress!)
  }
  var failures: [String] = []
  for (name, got, want, magnitudes) in [
    ("y", y, expectedY, sizes.y), ("dx", dx, expected.dx, sizes.dx),
    ("dw", dw, expected.dw, sizes.dw), ("db", db, expected.db, sizes.db),
  ] {
    let e = worstError(got, want, magnitudes: magnitudes)
    if !(e <= tolerance) { failures.append("\(g) bias \(bias): \(name) error \(e)") }
  }
  // Requesting one gradient alone gives the same numbers as requesting all of them.
  var dwOnly = [Float](repeating: .nan, count: w.count)
  var dxOnly = [Float](repeating: .nan, count: x.count)
  workspace.withUnsafeMutableBufferPointer { ws in
    ConvolutionKernel.backward(
      g, input: x, weight: w, outputGrad: dy, inputGrad: nil, weightGrad: &dwOnly, biasGrad: nil,
      workspace: ws.baseAddress!)
    ConvolutionKernel.backward(
      g, input: x, weight: w, outputGrad: dy, inputGrad: &dxOnly, weightGrad: nil, biasGrad: nil,
      workspace: ws.baseAddress!)
  }
  if dwOnly != dw { failures.append("\(g): dw alone differs") }
  if dxOnly != dx { failures.append("\(g): dx alone differs") }
  return failures
}

@Suite("Convolution kernels")
struct ConvolutionKernelTests {
  func geometry(
    _ n: Int, _ cin: Int, _ h: Int, _ w: Int, _ cout: Int, _ kh: Int, _ kw: Int, s: Int = 1,
    p: Int = 0, d: Int = 1, groups: Int = 1
  ) -> ConvGeometry {
    ConvGeometry(
      batch: n, inChannels: cin, height: h, width: w, outChannels: cout, kernelHeight: kh,
      kernelWidth: kw, stride: s, padding: p, dilation: d, groups: groups)
  }

  @Test func generalPathsMatchReference() {
    let cases: [ConvGeometry] = [
      geometry(2, 3, 7, 9, 4, 3, 3, p: 1),
      geometry(2, 3, 9, 8, 5, 3, 3, s: 2, p: 1),
      geometry(1, 2, 10, 11, 3, 3, 3, p: 2, d: 2),
      geometry(3, 4, 6, 6, 6, 3, 3, p: 1, groups: 2),
      geometry(2, 6, 5, 7, 6, 1, 1, groups: 3),
      geometry(2, 4, 6, 5, 3, 1, 1),
      geometry(2, 4, 7, 7, 5, 1, 1, s: 2),
      geometry(2, 3, 8, 9, 4, 2, 3, s: 3, p: 2),
      geometry(1, 2, 4, 4, 2, 5, 5, p: 1),
      // Output 32x32 = 1024 columns: images go two to a product, with one left over.
      geometry(3, 2, 32, 32, 3, 3, 3, p: 1),
      // Large enough for one product per image (and the in-place 1x1 path).
      geometry(2, 2, 48, 48, 3, 1, 1),
      // One small 1x1 product per image, an odd number of images.
      geometry(3, 5, 24, 24, 6, 1, 1),
      geometry(2, 4, 24, 24, 4, 1, 1, groups: 2),
      geometry(2, 2, 46, 46, 2, 3, 3, p: 1, groups: 2),
      // Column counts that are multiples of 256 (rows padded apart): four 16x16 outputs per
      // product, then one alone; 128 1x1 images of 4x4 (2048 columns), then two.
      geometry(5, 2, 16, 16, 3, 3, 3, p: 1),
      geometry(130, 12, 4, 4, 16, 1, 1),
    ]
    for (k, g) in cases.enumerated() {
      for bias in [false, true] {
        let failures = checkAgainstReference(g, bias: bias, seed: UInt64(k * 2 + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }

  @Test func depthwiseMatchesReference() {
    var cases: [ConvGeometry] = []
    for (s, p, d) in [(1, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 2), (2, 2, 2), (3, 1, 1), (1, 3, 1)] {
      cases.append(geometry(2, 3, 9, 13, 3, 3, 3, s: s, p: p, d: d, groups: 3))
    }
    cases += [
      geometry(1, 2, 17, 20, 2, 5, 5, p: 2, groups: 2),
      geometry(2, 2, 8, 7, 2, 5, 5, s: 2, p: 2, groups: 2),
      geometry(1, 3, 6, 9, 3, 2, 3, p: 1, groups: 3),
      geometry(1, 2, 3, 3, 2, 3, 3, groups: 2),
      // The small planes of the Fashion-MNIST network: rows shorter than a vector, stride-2
      // rows split into phases sixteen floats at a time, and widths at and past sixteen.
      geometry(3, 5, 14, 14, 5, 3, 3, s: 2, p: 1, groups: 5),
      geometry(2, 4, 7, 7, 4, 3, 3, s: 2, p: 1, groups: 4),
      geometry(2, 3, 28, 28, 3, 3, 3, s: 2, p: 1, groups: 3),
      geometry(2, 3, 4, 4, 3, 3, 3, p: 1, groups: 3),
      geometry(2, 3, 7, 7, 3, 3, 3, p: 1, groups: 3),
      geometry(2, 3, 5, 16, 3, 3, 3, s: 2, p: 1, groups: 3),
      geometry(2, 3, 9, 33, 3, 3, 3, s: 2, groups: 3),
      geometry(2, 3, 6, 31, 3, 3, 3, s: 2, p: 2, groups: 3),
      geometry(1, 2, 6, 17, 2, 5, 5, s: 2, p: 2, groups: 2),
      // Enough planes for every worker to take a run of them.
      geometry(16, 24, 14, 14, 24, 3, 3, s: 2, p: 1, groups: 24),
      geometry(16, 24, 7, 7, 24, 3, 3, p: 1, groups: 24),
      // Flat planes (stride 1, 3x3, padding 1, at most 1024 floats): planes smaller than a
      // vector, one row or one column, 16x16 and 32x32, and many 2x2 planes shared by workers.
      geometry(3, 4, 2, 2, 4, 3, 3, p: 1, groups: 4),
      geometry(2, 3, 1, 9, 3, 3, 3, p: 1, groups: 3),
      geometry(2, 3, 11, 1, 3, 3, 3, p: 1, groups: 3),
      geometry(2, 2, 16, 16, 2, 3, 3, p: 1, groups: 2),
      geometry(2, 2, 32, 32, 2, 3, 3, p: 1, groups: 2),
      geometry(2, 2, 3, 5, 2, 3, 3, p: 1, groups: 2),
      geometry(40, 24, 2, 2, 24, 3, 3, p: 1, groups: 24),
      geometry(24, 16, 14, 14, 16, 3, 3, p: 1, groups: 16),
      // Flat planes whose weight gradient runs channel by channel, over more images than one
      // fold of its lane sums holds (128 vectors): 4x4 and 7x7.
      geometry(136, 3, 4, 4, 3, 3, 3, p: 1, groups: 3),
      geometry(40, 5, 7, 7, 5, 3, 3, p: 1, groups: 5),
      // Flat stride 2 (3x3, padding 1, at most 256 outputs): odd and even sides, one input
      // pixel, rows of more than sixteen floats, 32x32, many small planes across workers.
      geometry(2, 2, 1, 1, 2, 3, 3, s: 2, p: 1, groups: 2),
      geometry(2, 3, 2, 9, 3, 3, 3, s: 2, p: 1, groups: 3),
      geometry(3, 2, 6, 33, 2, 3, 3, s: 2, p: 1, groups: 2),
      geometry(1, 2, 32, 32, 2, 3, 3, s: 2, p: 1, groups: 2),
      geometry(40, 24, 4, 4, 24, 3, 3, s: 2, p: 1, groups: 24),
      geometry(24, 16, 7, 7, 16, 3, 3, s: 2, p: 1, groups: 16),
      // Flat stride-2 input gradient beside the general weight gradient (outputs from 257 to
      // 784): 56x56 and odd sides, one image and enough for every worker.
      geometry(2, 3, 56, 56, 3, 3, 3, s: 2, p: 1, groups: 3),
      geometry(1, 2, 35, 41, 2, 3, 3, s: 2, p: 1, groups: 2),
      geometry(8, 8, 34, 34, 8, 3, 3, s: 2, p: 1, groups: 8),
    ]
    #expect(cases.contains { DepthwiseKernel.runsFlat($0) })
    #expect(cases.contains { DepthwiseKernel.runsFlatStride2($0) })
    #expect(
      cases.contains {
        DepthwiseKernel.runsFlatStride2InputGradient($0) && !DepthwiseKernel.runsFlatStride2($0)
      })
    #expect(
      !DepthwiseKernel.runsFlatStride2InputGradient(
        geometry(1, 2, 58, 58, 2, 3, 3, s: 2, p: 1, groups: 2)))
    #expect(
      !DepthwiseKernel.runsFlatStride2(geometry(1, 2, 66, 64, 2, 3, 3, s: 2, p: 1, groups: 2)))
    #expect(!DepthwiseKernel.runsFlat(geometry(2, 2, 33, 32, 2, 3, 3, p: 1, groups: 2)))
    for (k, g) in cases.enumerated() {
      #expect(g.isDepthwise)
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(100 + k * 2 + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }

  @Test func smallPointwiseLayersMatchReference() {
    let cases: [ConvGeometry] = [
      // 7x7: three whole vectors and one partial one per plane (at 16 lanes).
      geometry(3, 16, 7, 7, 24, 1, 1),
      // Planes of exactly one vector, and of one and a quarter.
      geometry(2, 8, 4, 4, 16, 1, 1),
      geometry(2, 16, 4, 5, 32, 1, 1),
      geometry(3, 48, 7, 7, 48, 1, 1),
      // Weight gradient summed over several runs of images (three 14x14 images per run).
      geometry(12, 48, 14, 14, 48, 1, 1),
      // More weights than the register blocks take: the long product.
      geometry(3, 64, 7, 7, 48, 1, 1),
      geometry(5, 24, 14, 14, 8, 1, 1),
      // Enough images for every worker to take a run of them.
      geometry(40, 16, 7, 7, 16, 1, 1),
      // A narrow layer on 28x28 images.
      geometry(3, 24, 28, 28, 24, 1, 1),
      // Planes ending with two and three floats past whole vectors (at 8 and 16 lanes: across
      // the rows), and with five and nine (a partial vector of positions).
      geometry(3, 16, 3, 6, 16, 1, 1),
      geometry(2, 16, 1, 19, 8, 1, 1),
      geometry(2, 8, 3, 7, 8, 1, 1),
      geometry(2, 8, 5, 5, 16, 1, 1),
    ]
    // Both weight gradients: register blocks for narrow layers, the long product for wider.
    #expect(cases.contains { PointwiseKernel.computesWeightGradient($0) })
    #expect(cases.contains { !PointwiseKernel.computesWeightGradient($0) })
    for (k, g) in cases.enumerated() {
      #expect(PointwiseKernel.applies(g), "\(g)")
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(300 + k * 2 + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
    // Channel counts that are not multiples of 8, or wide layers, keep the general path.
    #expect(!PointwiseKernel.applies(geometry(2, 12, 7, 7, 16, 1, 1)))
    #expect(!PointwiseKernel.applies(geometry(2, 192, 4, 4, 1024, 1, 1)))
    #expect(!PointwiseKernel.applies(geometry(2, 64, 28, 28, 64, 1, 1)))
    #expect(!PointwiseKernel.applies(geometry(2, 16, 32, 32, 16, 1, 1)))
    // One image, or planes smaller than a vector (a generator's pooled input), too.
    #expect(!PointwiseKernel.applies(geometry(1, 16, 7, 7, 16, 1, 1)))
    #expect(!PointwiseKernel.applies(geometry(8, 16, 1, 1, 16, 1, 1)))
  }

  /// 1x1 layers on 1x1 images (meta-ACON's generator on the pooled means) are one matrix
  /// product of the `[N, C]` rows per pass, with no workspace: a reduction and an expansion, a
  /// batch of 2, and one large enough for the product to be shared by the workers.
  @Test func pointwiseLayersOnPixelsMatchReference() {
    let cases = [
      geometry(32, 96, 1, 1, 12, 1, 1), geometry(32, 12, 1, 1, 96, 1, 1),
      geometry(2, 3, 1, 1, 5, 1, 1), geometry(256, 200, 1, 1, 190, 1, 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(ConvolutionKernel.runsOnPixels(g), "\(g)")
      #expect(ConvolutionKernel.forwardWorkspaceCount(g) == 0)
      #expect(ConvolutionKernel.backwardWorkspaceCount(g) == 0)
      #expect(ConvolutionKernel.accumulatesInputGradient(g))
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(700 + k * 2 + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
      // The input gradient added to what dx holds.
      var rng = Lcg(state: UInt64(720 + k))
      let x = rng.array(g.batch * g.inChannels)
      let w = rng.array(g.outChannels * g.inChannels)
      let dy = rng.array(g.batch * g.outChannels)
      let before = rng.array(x.count)
      var dx = before
      var workspace: [Float] = [.nan]
      ConvolutionKernel.backward(
        g, input: x, weight: w, outputGrad: dy, inputGrad: &dx, weightGrad: nil, biasGrad: nil,
        workspace: &workspace, accumulatingInputGrad: true)
      let expected = zip(ReferenceConvolution(g: g).backward(x, w, dy).dx, before).map {
        $0 + Double($1)
      }
      #expect(worstError(dx, expected) <= 1e-5, "\(g)")
    }
    // Larger images, grouped layers and strided or padded ones keep their paths.
    #expect(!ConvolutionKernel.runsOnPixels(geometry(8, 16, 2, 2, 16, 1, 1)))
    #expect(!ConvolutionKernel.runsOnPixels(geometry(8, 16, 1, 1, 16, 1, 1, groups: 4)))
    #expect(!ConvolutionKernel.runsOnPixels(geometry(8, 16, 1, 1, 16, 3, 3, p: 1)))
  }

  @Test func depthwiseWithChannelMultiplierUsesGeneralPath() {
    let g = geometry(2, 3, 6, 6, 6, 3, 3, p: 1, groups: 3)
    #expect(!g.isDepthwise)
    let failures = checkAgainstReference(g, bias: true, seed: 7)
    #expect(failures.isEmpty, "\(failures)")
  }

  @Test func batchingPolicy() {
    // 56x56 outputs are large enough alone; 7x7 ones are batched up to the batch size.
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 56, 56, 64, 3, 3, p: 1)) == 1)
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 7, 7, 64, 1, 1)) == 32)
    // Larger kernels aim for 784 columns (their column matrices are 9x taller), 1x1 for 2048.
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 28, 28, 64, 3, 3, p: 1)) == 1)
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 14, 14, 64, 3, 3, p: 1)) == 4)
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 28, 28, 64, 1, 1)) == 1)
    #expect(ConvolutionKernel.imagesPerProduct(geometry(32, 64, 14, 14, 64, 1, 1)) == 11)
    #expect(ConvolutionKernel.forwardWorkspaceCount(geometry(32, 64, 56, 56, 64, 1, 1)) == 0)
    // Rows of a column matrix are never a multiple of 256 floats apart (see leadingDimension).
    #expect(ConvolutionKernel.leadingDimension(2048) == 2064)
    #expect(ConvolutionKernel.leadingDimension(2009) == 2009)
  }

  /// The matrix-product paths add the input gradient to what `dx` holds when asked: one 1x1
  /// product per image (large images), batched 1x1 and strided 1x1 folds, overlapping 3x3
  /// folds; the other paths say they cannot.
  @Test func inputGradientAccumulates() {
    let cases = [
      geometry(2, 12, 24, 24, 20, 1, 1),
      geometry(4, 300, 4, 4, 40, 1, 1),
      geometry(2, 12, 14, 14, 20, 1, 1, s: 2),
      geometry(2, 4, 7, 7, 6, 3, 3, s: 2, p: 1),
      geometry(2, 4, 9, 9, 6, 3, 3, p: 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(ConvolutionKernel.accumulatesInputGradient(g), "\(g)")
      var rng = Lcg(state: UInt64(600 + k))
      let x = rng.array(g.batch * g.inChannels * g.height * g.width)
      let w = rng.array(g.outChannels * g.patchSize)
      let dy = rng.array(g.batch * g.outChannels * g.outHeight * g.outWidth)
      let before = rng.array(x.count)
      var dx = before
      var workspace = [Float](
        repeating: .nan, count: max(1, ConvolutionKernel.backwardWorkspaceCount(g)))
      workspace.withUnsafeMutableBufferPointer { ws in
        ConvolutionKernel.backward(
          g, input: x, weight: w, outputGrad: dy, inputGrad: &dx, weightGrad: nil, biasGrad: nil,
          workspace: ws.baseAddress!, accumulatingInputGrad: true)
      }
      let expected = zip(ReferenceConvolution(g: g).backward(x, w, dy).dx, before).map {
        $0 + Double($1)
      }
      #expect(worstError(dx, expected) <= 1e-5, "\(g)")
    }
    #expect(!ConvolutionKernel.accumulatesInputGradient(geometry(2, 16, 8, 8, 16, 3, 3, p: 1)))
    #expect(!ConvolutionKernel.accumulatesInputGradient(geometry(2, 16, 8, 8, 16, 1, 1)))
    #expect(
      !ConvolutionKernel.accumulatesInputGradient(geometry(2, 8, 8, 8, 8, 3, 3, p: 1, groups: 8)))
  }
}

@Suite("Winograd convolutions")
struct WinogradKernelTests {
  func geometry(_ n: Int, _ cin: Int, _ h: Int, _ w: Int, _ cout: Int, p: Int) -> ConvGeometry {
    ConvGeometry(
      batch: n, inChannels: cin, height: h, width: w, outChannels: cout, kernelHeight: 3,
      kernelWidth: 3, padding: p)
  }

  /// Runs `body` with every Winograd layer on `tile x tile` output tiles.
  func withTile<Result>(_ tile: Int, _ body: () -> Result) -> Result {
    var options = KernelOptions.current
    options.winogradTile = tile
    return KernelOptions.with(options, body)
  }

  /// Error bound of each tile against the Float64 direct sum, relative to `1 +` the sum of its
  /// terms' magnitudes (``checkAgainstReference(_:bias:seed:tolerance:)``): F(4x4)'s transforms
  /// scale by up to 8 (A) and 5 (B) around the products, F(2x2)'s by 1.
  func tolerance(_ tile: Int) -> Double { tile == 4 ? 2e-5 : 2e-6 }

  /// Layers that qualify, with each output tile: odd and even sizes (cropped last tiles, sides
  /// from 1 to 21 across 2 and 4), every padding it takes, one pixel, several tile rows per block
  /// and images sharing a block.
  @Test(arguments: [2, 4]) func matchesReference(tile: Int) {
    let cases: [ConvGeometry] = [
      geometry(2, 16, 9, 9, 16, p: 1),
      geometry(1, 16, 8, 10, 24, p: 1),
      geometry(2, 20, 7, 6, 16, p: 0),
      geometry(1, 16, 5, 11, 17, p: 2),
      geometry(3, 16, 1, 1, 16, p: 1),
      geometry(2, 16, 3, 3, 16, p: 0),
      geometry(1, 16, 19, 21, 16, p: 1),
      geometry(2, 18, 12, 13, 16, p: 1),
    ]
    withTile(tile) {
      for (k, g) in cases.enumerated() {
        #expect(WinogradKernel.applies(g) && ConvolutionKernel.runsWinograd(g), "\(g)")
        #expect(WinogradKernel.tileSize(g) == tile)
        for bias in [false, true] {
          let failures = checkAgainstReference(
            g, bias: bias, seed: UInt64(300 + k * 2 + (bias ? 1 : 0)), tolerance: tolerance(tile))
          #expect(failures.isEmpty, "tile \(tile): \(failures)")
        }
      }
    }
  }

  /// Wide layers (ResNet-50's 3x3 layers sum 64 to 512 channels), with unit-range weights (not
  /// initialisation's 1/sqrt(fan-in)), so outputs reach tens: the same bound, relative to the
  /// sums of the terms' magnitudes.
  @Test(arguments: [2, 4]) func wideLayersMatchReference(tile: Int) {
    withTile(tile) {
      for (k, g) in [geometry(1, 256, 8, 8, 32, p: 1), geometry(2, 64, 14, 14, 64, p: 1)]
        .enumerated()
      {
        let failures = checkAgainstReference(
          g, bias: false, seed: UInt64(400 + k), tolerance: tolerance(tile))
        #expect(failures.isEmpty, "tile \(tile): \(failures)")
      }
    }
  }

  /// Small images with many channels, shared by positions (each position's products over every
  /// tile) and, with the cap at zero, by tile rows: both match the reference, with two workers
  /// whatever the machine.
  @Test(arguments: [2, 4]) func sharedByPositions(tile: Int) {
    let cases = [geometry(1, 64, 5, 5, 48, p: 1), geometry(2, 48, 6, 6, 64, p: 0)]
    for (k, g) in cases.enumerated() {
      for whole in [true, false] {
        var options = KernelOptions.current
        options.winogradTile = tile
        options.workers = 2
        options.winogradWholeLayerFloats = whole ? 1 << 22 : 0
        KernelOptions.with(options) {
          #expect(WinogradKernel.sharesPositions(g) == whole, "\(g)")
          let failures = checkAgainstReference(
            g, bias: true, seed: UInt64(500 + k), tolerance: tolerance(tile))
          #expect(failures.isEmpty, "tile \(tile) whole \(whole): \(failures)")
        }
      }
    }
    // Larger images keep sharing tile rows.
    #expect(!WinogradKernel.sharesPositions(geometry(8, 128, 28, 28, 128, p: 1)))
  }

  /// The automatic choice: F(4x4) where its products are at least a quarter fewer, on images
  /// of at least 36 of its tiles or in layers of 256 channels and more whose batch holds at
  /// least 32 of its tiles.
  @Test func tileChoice() {
    #expect(WinogradKernel.tileSize(geometry(1, 64, 56, 56, 64, p: 1)) == 4)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 28, 28, 64, p: 1)) == 4)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 24, 24, 64, p: 1)) == 4)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 21, 21, 64, p: 1)) == 4)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 20, 20, 64, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 60, 6, 64, p: 1)) == 2)  // 30 tiles
    #expect(WinogradKernel.tileSize(geometry(1, 64, 14, 14, 64, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 7, 7, 64, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 6, 6, 64, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 5, 5, 64, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(1, 64, 2, 2, 64, p: 1)) == 2)
    // Wide layers on small images: by the tiles of the whole batch.
    #expect(WinogradKernel.tileSize(geometry(8, 512, 7, 7, 512, p: 1)) == 4)  // 32 tiles
    #expect(WinogradKernel.tileSize(geometry(4, 512, 7, 7, 512, p: 1)) == 2)  // 16 tiles
    #expect(WinogradKernel.tileSize(geometry(2, 256, 14, 14, 256, p: 1)) == 4)
    #expect(WinogradKernel.tileSize(geometry(1, 256, 14, 14, 256, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(8, 512, 7, 7, 128, p: 1)) == 2)  // thin output
    #expect(WinogradKernel.tileSize(geometry(8, 128, 14, 14, 128, p: 1)) == 2)
    #expect(WinogradKernel.tileSize(geometry(32, 256, 6, 6, 256, p: 1)) == 2)  // as many products
  }

  /// Blocks of one tile row (the smallest) give the same layer within rounding, and each block
  /// size is deterministic.
  @Test(arguments: [2, 4]) func blockSizeChangesOnlyRounding(tile: Int) {
    let g = geometry(2, 16, 13, 12, 16, p: 1)
    var rng = Lcg(state: 99)
    let x = rng.array(g.batch * g.inChannels * g.height * g.width)
    let w = rng.array(g.outChannels * g.patchSize)
    let dy = rng.array(g.batch * g.outChannels * g.outHeight * g.outWidth)
    func run(_ blockFloats: Int) -> (y: [Float], dx: [Float], dw: [Float]) {
      var y = [Float](repeating: .nan, count: dy.count)
      var dx = [Float](repeating: .nan, count: x.count)
      var dw = [Float](repeating: .nan, count: w.count)
      withTile(tile) {
        let count = max(
          WinogradKernel.forwardWorkspaceCount(g, blockFloats: blockFloats),
          WinogradKernel.backwardWorkspaceCount(g, blockFloats: blockFloats))
        var workspace = [Float](repeating: .nan, count: count)
        workspace.withUnsafeMutableBufferPointer { ws in
          WinogradKernel.forward(
            g, input: x, weight: w, bias: nil, output: &y, workspace: ws.baseAddress!,
            blockFloats: blockFloats)
          WinogradKernel.backward(
            g, input: x, weight: w, outputGrad: dy, inputGrad: &dx, weightGrad: &dw,
            workspace: ws.baseAddress!, blockFloats: blockFloats)
        }
      }
      return (y, dx, dw)
    }
    let whole = run(1 << 24)
    let rowByRow = run(1)
    #expect(rowByRow == run(1), "not deterministic")
    let reference = ReferenceConvolution(g: g)
    let expectedY = reference.forward(x, w, nil)
    let expected = reference.backward(x, w, dy)
    let sizes = reference.magnitudes(x, w, nil, dy)
    for result in [whole, rowByRow] {
      #expect(worstError(result.y, expectedY, magnitudes: sizes.y) <= tolerance(tile))
      #expect(worstError(result.dx, expected.dx, magnitudes: sizes.dx) <= tolerance(tile))
      #expect(worstError(result.dw, expected.dw, magnitudes: sizes.dw) <= tolerance(tile))
    }
  }

  @Test func whatItDoesNotTake() {
    #expect(!WinogradKernel.applies(geometry(1, 8, 8, 8, 16, p: 1)))  // too few channels
    #expect(!WinogradKernel.applies(geometry(1, 16, 8, 8, 16, p: 3)))
    #expect(
      !WinogradKernel.applies(
        ConvGeometry(
          batch: 1, inChannels: 16, height: 8, width: 8, outChannels: 16, kernelHeight: 3,
          kernelWidth: 3, stride: 2, padding: 1)))
    #expect(
      !WinogradKernel.applies(
        ConvGeometry(
          batch: 1, inChannels: 16, height: 8, width: 8, outChannels: 16, kernelHeight: 3,
          kernelWidth: 3, padding: 2, dilation: 2)))
    #expect(
      !WinogradKernel.applies(
        ConvGeometry(
          batch: 1, inChannels: 16, height: 8, width: 8, outChannels: 16, kernelHeight: 3,
          kernelWidth: 3, padding: 1, groups: 2)))
  }
}
