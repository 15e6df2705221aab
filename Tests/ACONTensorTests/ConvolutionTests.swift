import ACONKernels
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("Convolution")
struct ConvolutionTests {
  /// One finite-difference check of `conv2d` over x, weight and (optionally) bias.
  func gradientFailures(
    x: [Int], weight: [Int], bias: Bool, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
    groups: Int = 1, seed: UInt64
  ) throws -> [String] {
    var rng = RandomGenerator(seed: seed)
    var inputs = [
      Tensor.randomNormal(x, using: &rng), Tensor.randomNormal(weight, std: 0.5, using: &rng),
    ]
    if bias { inputs.append(Tensor.randomNormal([weight[0]], using: &rng)) }
    return try GradientCheck().failures(inputs) { t in
      try Tensor.conv2d(
        t[0], weight: t[1], bias: bias ? t[2] : nil, stride: stride, padding: padding,
        dilation: dilation, groups: groups)
    }
  }

  /// A convolution's scratch comes from the thread's ``ScratchArena``: after a training step
  /// of a layer, no buffer of its workspace sizes waits in the pool.
  @Test func scratchStaysOutOfThePool() throws {
    // A Winograd layer (forward and backward scratch of two sizes) of a shape no other test uses.
    let g = ConvGeometry(
      batch: 3, inChannels: 40, height: 9, width: 9, outChannels: 24, kernelHeight: 3,
      kernelWidth: 3, stride: 1, padding: 1)
    try #require(ConvolutionKernel.runsWinograd(g))
    let forward = ConvolutionKernel.forwardWorkspaceCount(g)
    let backward = ConvolutionKernel.backwardWorkspaceCount(g)
    try #require(forward > 0 && backward > 0 && forward != backward)
    var rng = RandomGenerator(seed: 11)
    let x = Parameter(Tensor.randomNormal([3, 40, 9, 9], using: &rng))
    let w = Parameter(Tensor.randomNormal([24, 40, 3, 3], std: 0.1, using: &rng))
    let b = Parameter(Tensor.randomNormal([24], using: &rng))
    for _ in 0..<2 {
      try Tensor.conv2d(x.value, weight: w.value, bias: b.value, padding: 1).sum().backward()
    }
    #expect(BufferPool.shared.cachedBufferCount(floats: forward) == 0)
    #expect(BufferPool.shared.cachedBufferCount(floats: backward) == 0)
    #expect(ScratchArena.current.capacity >= max(forward, backward))
  }

  @Test func general3x3Gradients() throws {
    for bias in [false, true] {
      #expect(
        try gradientFailures(
          x: [2, 3, 6, 5], weight: [4, 3, 3, 3], bias: bias, padding: 1, seed: 1
        ).isEmpty)
      #expect(
        try gradientFailures(
          x: [2, 3, 7, 7], weight: [4, 3, 3, 3], bias: bias, stride: 2, padding: 1, seed: 2
        )
        .isEmpty)
    }
  }

  @Test func dilatedGroupedAndRectangularGradients() throws {
    #expect(
      try gradientFailures(
        x: [1, 2, 8, 8], weight: [3, 2, 3, 3], bias: true, padding: 2, dilation: 2, seed: 3
      )
      .isEmpty)
    for bias in [false, true] {
      #expect(
        try gradientFailures(
          x: [2, 4, 5, 5], weight: [6, 2, 3, 3], bias: bias, padding: 1, groups: 2, seed: 4
        )
        .isEmpty)
    }
    #expect(
      try gradientFailures(
        x: [2, 3, 6, 7], weight: [2, 3, 2, 3], bias: true, stride: 2, padding: 1, seed: 5
      )
      .isEmpty)
  }

  @Test func pointwiseGradients() throws {
    for bias in [false, true] {
      #expect(
        try gradientFailures(x: [2, 4, 5, 5], weight: [3, 4, 1, 1], bias: bias, seed: 6).isEmpty)
    }
    #expect(
      try gradientFailures(x: [2, 4, 5, 5], weight: [3, 4, 1, 1], bias: true, stride: 2, seed: 7)
        .isEmpty)
  }

  @Test func depthwiseGradients() throws {
    for bias in [false, true] {
      #expect(
        try gradientFailures(
          x: [2, 4, 6, 6], weight: [4, 1, 3, 3], bias: bias, padding: 1, groups: 4, seed: 8
        )
        .isEmpty)
      #expect(
        try gradientFailures(
          x: [2, 3, 7, 7], weight: [3, 1, 3, 3], bias: bias, stride: 2, padding: 1, groups: 3,
          seed: 9
        ).isEmpty)
    }
    #expect(
      try gradientFailures(
        x: [1, 2, 9, 9], weight: [2, 1, 5, 5], bias: true, padding: 2, dilation: 1, groups: 2,
        seed: 10
      ).isEmpty)
  }

  @Test func outputShapeFollowsPyTorch() throws {
    let x = Tensor.zeros([2, 4, 11, 9])
    let y = try Tensor.conv2d(
      x, weight: .zeros([6, 2, 3, 3]), bias: nil, stride: 2, padding: 1, dilation: 2, groups: 2)
    // (11 + 2 - 4 - 1) / 2 + 1 = 5 and (9 + 2 - 4 - 1) / 2 + 1 = 4.
    #expect(y.shape == [2, 6, 5, 4])
  }

  @Test func onlyRequestedGradientsAreComputed() throws {
    var rng = RandomGenerator(seed: 11)
    let x = Tensor.randomNormal([2, 3, 5, 5], using: &rng)
    let w = Parameter(Tensor.randomNormal([4, 3, 3, 3], using: &rng))
    let b = Tensor.randomNormal([4], using: &rng)
    // Only the weight records: the pullback returns nothing for x and the bias.
    let y = try Tensor.conv2d(x, weight: w.value, bias: b, padding: 1)
    try y.sum().backward()
    let onlyW = try #require(w.grad)
    // The same weight gradient when every input records.
    let px = Parameter(x)
    let pb = Parameter(b)
    w.zeroGrad()
    try Tensor.conv2d(px.value, weight: w.value, bias: pb.value, padding: 1).sum().backward()
    #expect(maxAbsDifference(onlyW, try #require(w.grad)) == 0)
    #expect(px.grad != nil && pb.grad != nil)
    // Nothing records without gradients.
    let z = try withoutGradients { try Tensor.conv2d(px.value, weight: w.value, bias: nil) }
    #expect(!z.requiresGrad)
  }

  /// Runs `conv2d` and returns the error it throws (nil when it does not throw).
  func error(
    x: [Int], weight: [Int], bias: [Int]? = nil, stride: Int = 1, padding: Int = 0,
    dilation: Int = 1, groups: Int = 1
  ) -> TensorError? {
    do {
      _ = try Tensor.conv2d(
        .zeros(x), weight: .zeros(weight), bias: bias.map { .zeros($0) }, stride: stride,
        padding: padding, dilation: dilation, groups: groups)
      return nil
    } catch let e as TensorError {
      return e
    } catch {
      return nil
    }
  }

  @Test func shapeErrorsNameTheOpAndShapes() throws {
    let cases: [(TensorError?, [Int])] = [
      (error(x: [3, 8, 8], weight: [4, 3, 3, 3]), [3, 8, 8]),  // rank of x
      (error(x: [1, 3, 8, 8], weight: [4, 3, 3]), [4, 3, 3]),  // rank of weight
      (error(x: [1, 3, 8, 8], weight: [4, 2, 3, 3]), [4, 2, 3, 3]),  // channel mismatch
      (error(x: [1, 3, 8, 8], weight: [4, 1, 3, 3], groups: 2), [1, 3, 8, 8]),  // Cin % groups
      (error(x: [1, 4, 8, 8], weight: [3, 2, 3, 3], groups: 2), [3, 2, 3, 3]),  // Cout % groups
      (error(x: [1, 3, 4, 4], weight: [2, 3, 5, 5]), [2, 3, 5, 5]),  // kernel > input
      (error(x: [1, 3, 4, 4], weight: [2, 3, 3, 3], dilation: 2), [1, 3, 4, 4]),  // reach 5 > 4
      (error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], bias: [3]), [3]),  // bias length
      (error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], bias: [4, 1]), [4, 1]),  // bias rank
    ]
    for (e, shape) in cases {
      let e = try #require(e)
      guard case .shapeMismatch = e else {
        Issue.record("expected a shape mismatch, got \(e)")
        continue
      }
      #expect(e.description.contains("conv2d"), "\(e)")
      #expect(e.description.contains(describe(shape)), "\(e)")
    }
    // A kernel that exactly fits the padded input is fine.
    #expect(error(x: [1, 3, 4, 4], weight: [2, 3, 5, 5], padding: 1) == nil)
  }

  @Test func invalidArguments() throws {
    for e in [
      error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], stride: 0),
      error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], dilation: 0),
      error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], padding: -1),
      error(x: [1, 3, 8, 8], weight: [4, 3, 3, 3], groups: 0),
    ] {
      let e = try #require(e)
      guard case .invalidArgument(let op, _) = e else {
        Issue.record("expected an invalid argument, got \(e)")
        continue
      }
      #expect(op == "conv2d")
    }
  }
}

/// `conv2d` against PyTorch's `F.conv2d`: values and gradients from
/// scripts/golden/convolution.py, which also lists the cases and their arguments.
@Suite("Convolution goldens")
struct ConvolutionGoldenTests {
  let golden: Golden

  init() throws { golden = try Golden(named: "convolution", in: .module) }

  @Test func everyCaseMatchesPyTorch() throws {
    let cases = try #require(golden.metadata["cases"]).split(separator: " ").map(String.init)
    #expect(cases.count >= 10)
    for name in cases {
      let params = try golden.integers("\(name).params")
      try #require(params.count == 4)
      let hasBias = golden.contains("\(name).bias")
      let x = Parameter(try golden.tensor("\(name).x"))
      let w = Parameter(try golden.tensor("\(name).weight"))
      let b = hasBias ? Parameter(try golden.tensor("\(name).bias")) : nil
      let out = try Tensor.conv2d(
        x.value, weight: w.value, bias: b?.value, stride: params[0], padding: params[1],
        dilation: params[2], groups: params[3])
      #expect(golden.mismatch(out, "\(name).out", relativeL2: 1e-5) == nil, "\(name)")
      try (out * golden.tensor("\(name).proj")).sum().backward()
      #expect(golden.mismatch(try #require(x.grad), "\(name).grad_x", relativeL2: 1e-5) == nil)
      #expect(golden.mismatch(try #require(w.grad), "\(name).grad_weight", relativeL2: 1e-5) == nil)
      if let b {
        #expect(golden.mismatch(try #require(b.grad), "\(name).grad_bias", relativeL2: 1e-5) == nil)
      }
    }
  }
}
