import ACONKernels
import ACONNN
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// Finite-difference check of a layer: the input and every parameter, for
/// `L = sum(layer(x) * r)` with a fixed random `r`. Returns one message per failing element.
func layerGradientFailures(
  _ layer: Module, _ x: Tensor, step: Float = 1e-2, relative: Double = 2e-2,
  absolute: Double = 2e-3, maximumChecks: Int = 24
) throws -> [String] {
  let input = Parameter(x)
  var check = GradientCheck(step: step, relative: relative, absolute: absolute)
  check.maximumChecks = maximumChecks
  check.seed = 77
  return try check.failures([("x", input)] + layer.namedParameters()) { try layer(input.value) }
}

private func golden() throws -> [String: Tensor] {
  let url = try #require(
    Bundle.module.url(forResource: "acon", withExtension: "safetensors", subdirectory: "Golden"))
  return try SafeTensors.read(url).tensors
}

/// Relative L2 error below `tolerance`, or every element within 5e-5 (gradients that are zero
/// in exact arithmetic, such as a bias in front of a batch norm, are rounding noise in both).
private func close(_ a: Tensor, _ b: Tensor, _ tolerance: Double = 1e-5) -> Bool {
  guard a.count == b.count else { return false }
  let a2 = Tensor(shape: b.shape, values: a.scalars)
  return relativeError(a2, b) < tolerance || maxAbsDifference(a2, b) < 5e-5
}

/// The reference's N(0, 0.01) funnel weights make the conv output tiny next to a 1e-2 step,
/// and the BN after it divides by its spread: give the check weights of order 1.
private func spreadFunnelWeights(_ layer: AconFReLU, _ rng: inout RandomGenerator) {
  layer.convFReLU.weight.value = Tensor.randomNormal(
    [layer.channels, 1, 3, 3], std: 0.7, using: &rng)
}

@Suite("ACON family")
struct ACONTests {
  // MARK: Scalar math (paper section 1)

  @Test func derivativeConstants() {
    let u = ACONMath.extremalU
    // f'' = 0 where (2 - u) e^u + u + 2 = 0.
    #expect(abs((2 - u) * exp(u) + u + 2) < 1e-9)
    #expect(abs(ACONMath.derivativeOvershoot - 0.0998) < 1e-4)
    // Swish' lies in [-0.0998, 1.0998].
    let swish = ACONMath.derivativeBounds(p1: 1, p2: 0)
    #expect(abs(swish.upper - 1.0998) < 1e-4 && abs(swish.lower + 0.0998) < 1e-4)
  }

  @Test(arguments: [(1.3, -0.4, 0.7), (-2.0, 0.5, 3.0), (0.2, 0.9, -1.5)])
  func derivativeStaysInsideItsBoundsAndReachesThem(p1: Double, p2: Double, beta: Double) {
    let (lower, upper) = ACONMath.derivativeBounds(p1: p1, p2: p2)
    var lo = Double.infinity
    var hi = -Double.infinity
    var x = -40.0
    while x <= 40 {
      let f = ACONMath.aconCDerivative(x, p1: p1, p2: p2, beta: beta)
      lo = min(lo, f)
      hi = max(hi, f)
      // f' agrees with a central difference of f.
      let h = 1e-5
      let numeric =
        (ACONMath.aconC(x + h, p1: p1, p2: p2, beta: beta)
          - ACONMath.aconC(x - h, p1: p1, p2: p2, beta: beta)) / (2 * h)
      #expect(abs(numeric - f) < 1e-6)
      x += 0.001
    }
    #expect(lo >= lower - 1e-9 && hi <= upper + 1e-9)
    #expect(abs(lo - lower) < 1e-4 && abs(hi - upper) < 1e-4)
  }

  @Test func pullbackMatchesFiniteDifferences() {
    let (x, p1, p2, beta, g) = (0.8, 1.7, -0.6, 1.3, 0.9)
    let r = ACONMath.aconCPullback(x, p1: p1, p2: p2, beta: beta, upstream: g)
    let h = 1e-6
    func f(_ x: Double, _ p1: Double, _ p2: Double, _ b: Double) -> Double {
      g * ACONMath.aconC(x, p1: p1, p2: p2, beta: b)
    }
    #expect(abs(r.dx - (f(x + h, p1, p2, beta) - f(x - h, p1, p2, beta)) / (2 * h)) < 1e-7)
    #expect(abs(r.dp1 - (f(x, p1 + h, p2, beta) - f(x, p1 - h, p2, beta)) / (2 * h)) < 1e-7)
    #expect(abs(r.dp2 - (f(x, p1, p2 + h, beta) - f(x, p1, p2 - h, beta)) / (2 * h)) < 1e-7)
    #expect(abs(r.dbeta - (f(x, p1, p2, beta + h) - f(x, p1, p2, beta - h)) / (2 * h)) < 1e-7)
  }

  // MARK: Layers against the scalar math

  @Test func aconCLayerMatchesScalarMathAndPullback() throws {
    var rng = RandomGenerator(seed: 3)
    let layer = AconC(channels: 3, using: &rng)
    layer.beta.value.mutableData[1] = 0.3
    layer.beta.value.mutableData[2] = -2
    let x = Parameter(Tensor.randomNormal([2, 3, 3, 5], std: 2, using: &rng))
    let g = Tensor.randomNormal([2, 3, 3, 5], using: &rng)
    let y = try layer(x.value)
    try y.backward(seed: g)
    var dp1 = [Double](repeating: 0, count: 3)
    var dp2 = dp1
    var db = dp1
    for i in 0..<x.value.count {
      let c = (i / 15) % 3
      let (p1, p2, b) = (
        Double(layer.p1.value.data[c]), Double(layer.p2.value.data[c]),
        Double(layer.beta.value.data[c])
      )
      let xv = Double(x.value.data[i])
      #expect(abs(Double(y.data[i]) - ACONMath.aconC(xv, p1: p1, p2: p2, beta: b)) < 1e-5)
      let r = ACONMath.aconCPullback(xv, p1: p1, p2: p2, beta: b, upstream: Double(g.data[i]))
      #expect(abs(Double(x.grad!.data[i]) - r.dx) < 1e-5)
      dp1[c] += r.dp1
      dp2[c] += r.dp2
      db[c] += r.dbeta
    }
    for c in 0..<3 {
      #expect(abs(Double(layer.p1.grad!.data[c]) - dp1[c]) < 1e-4)
      #expect(abs(Double(layer.p2.grad!.data[c]) - dp2[c]) < 1e-4)
      #expect(abs(Double(layer.beta.grad!.data[c]) - db[c]) < 1e-4)
    }
  }

  @Test func limitsOfBeta() throws {
    var rng = RandomGenerator(seed: 4)
    let p1 = Tensor(shape: [1, 2, 1, 1], values: [1.5, -0.5])
    let p2 = Tensor(shape: [1, 2, 1, 1], values: [0.25, 2])
    let x = Tensor.randomNormal([2, 2, 4, 4], std: 3, using: &rng)
    // beta -> 0: the mean of p1 x and p2 x (linear).
    let linear = try AconC(p1: p1, p2: p2, beta: Tensor(shape: [2], values: [1e-7, -1e-7]))(x)
    // beta -> +inf: max(p1 x, p2 x); beta -> -inf: min.
    let maximum = try AconC(p1: p1, p2: p2, beta: Tensor(shape: [2], values: [1e4, 1e4]))(x)
    let minimum = try AconC(p1: p1, p2: p2, beta: Tensor(shape: [2], values: [-1e4, -1e4]))(x)
    for i in 0..<x.count {
      let c = (i / 16) % 2
      let a = p1.data[c] * x.data[i]
      let b = p2.data[c] * x.data[i]
      #expect(abs(linear.data[i] - (a + b) / 2) < 1e-5 * (1 + abs(a + b)))
      #expect(abs(maximum.data[i] - max(a, b)) < 1e-3)
      #expect(abs(minimum.data[i] - min(a, b)) < 1e-3)
      #expect(maximum.data[i].isFinite && minimum.data[i].isFinite)
    }
  }

  @Test func stableAtExtremeInputs() throws {
    let layer = AconC(
      p1: Tensor(shape: [2], values: [3, 1]), p2: Tensor(shape: [2], values: [-2, 0.5]),
      beta: Tensor(shape: [2], values: [1e5, -1e5]))
    let x = Parameter(Tensor(shape: [1, 2, 1, 4], values: [-1e4, -1, 1, 1e4, -1e4, 0, 2, 1e4]))
    let y = try layer(x.value)
    try y.sum().backward()
    #expect(y.scalars.allSatisfy { $0.isFinite })
    #expect(x.grad!.scalars.allSatisfy { $0.isFinite })
    #expect(layer.beta.grad!.scalars.allSatisfy { $0.isFinite })
    #expect(y.scalars[3] == 3e4 && y.scalars[0] == 2e4)
  }

  @Test func swishAndAconAAreSpecialCases() throws {
    var rng = RandomGenerator(seed: 5)
    let x = Tensor.randomNormal([2, 3, 2, 2], using: &rng)
    let swish = try Swish()(x)
    let aconA = try AconA(channels: 3)(x)
    for i in 0..<x.count {
      let v = Double(x.data[i])
      #expect(abs(Double(swish.data[i]) - v * ACONMath.sigmoid(v)) < 1e-6)
      #expect(abs(aconA.data[i] - swish.data[i]) < 1e-7)
    }
    let b = AconB(channels: 3, using: &rng)
    let yb = try b(x)
    for i in 0..<x.count {
      let c = (i / 4) % 3
      let p = Double(b.p.value.data[c])
      let r = ACONMath.aconC(Double(x.data[i]), p1: 1, p2: p, beta: 1)
      #expect(abs(Double(yb.data[i]) - r) < 1e-5)
    }
  }

  // MARK: Gradient checks for every variant, rank 4 and rank 2

  @Test(arguments: ActivationKind.allCases)
  func gradientsMatchFiniteDifferences(kind: ActivationKind) throws {
    var rng = RandomGenerator(seed: 6)
    let channels = 5
    let layer = kind.make(channels: channels, using: &rng, reduction: 2)
    if let frelu = layer as? AconFReLU { spreadFunnelWeights(frelu, &rng) }
    // Keep x away from ReLU's kink and the hard sigmoid's corners.
    func input(_ shape: [Int]) -> Tensor {
      let t = Tensor.randomNormal(shape, using: &rng)
      for i in 0..<t.count where abs(t.data[i]) < 0.05 { t.mutableData[i] += 0.2 }
      return t
    }
    let hard = kind == .aconCHard || kind == .metaAconHard
    let step: Float = hard ? 1e-3 : 1e-2
    let tolerance = hard ? 5e-2 : 2e-2
    let rank4 = try layerGradientFailures(
      layer, input([3, channels, 4, 3]), step: step, relative: tolerance)
    #expect(rank4.isEmpty, "\(kind.rawValue) rank 4: \(rank4.prefix(5))")
    let rank2 = try layerGradientFailures(
      layer, input([4, channels]), step: step, relative: tolerance)
    #expect(rank2.isEmpty, "\(kind.rawValue) rank 2: \(rank2.prefix(5))")
  }

  /// The op itself through the shared checker: x, p1, p2 and beta in every layout it accepts.
  @Test(arguments: [ACONGate.sigmoid, .hardSigmoid])
  func aconOpGradientsForEveryBetaLayout(gate: ACONGate) throws {
    var rng = RandomGenerator(seed: 13)
    let check = GradientCheck(
      step: gate == .sigmoid ? 1e-2 : 1e-3, relative: gate == .sigmoid ? 1e-2 : 3e-2,
      absolute: 2e-3)
    let layouts: [([Int], [Int], [Int])] = [
      ([2, 3, 4, 5], [1, 3, 1, 1], [1, 3, 1, 1]),  // ACON-C
      ([2, 3, 4, 5], [1, 3, 1, 1], [2, 3, 1, 1]),  // meta-ACON channel-wise
      ([2, 3, 4, 5], [1, 3, 1, 1], [2, 1, 1, 1]),  // layer-wise
      ([2, 3, 4, 5], [1, 3, 1, 1], [2, 3, 4, 5]),  // pixel-wise
      ([4, 9], [1, 9], [1, 9]),  // after a linear layer
      ([4, 9], [9], [4, 9]),
      ([4, 9], [1, 9], [4, 1]),
    ]
    for (xs, ps, bs) in layouts {
      let x = Tensor.randomNormal(xs, std: 1.5, using: &rng)
      let p1 = Tensor.randomNormal(ps, using: &rng)
      let p2 = Tensor.randomNormal(ps, using: &rng)
      let beta = Tensor.randomUniform(bs, low: 0.2, high: 2, using: &rng)
      let failures = try check.failures([x, p1, p2, beta]) { t in
        try Tensor.acon(t[0], p1: t[1], p2: t[2], beta: t[3], gate: gate)
      }
      #expect(failures.isEmpty, "x \(xs) beta \(bs): \(failures.prefix(4))")
    }
    let a = Tensor.randomNormal([2, 3, 4, 4], std: 2, using: &rng)
    let b = Tensor.randomNormal([2, 3, 4, 4], std: 2, using: &rng)
    #expect(
      try GradientCheck().failures([a, b]) { try Tensor.smoothMaximum($0[0], $0[1]) }.isEmpty)
  }

  @Test func frelUStrideTwoGradients() throws {
    var rng = RandomGenerator(seed: 7)
    let layer = AconFReLU(channels: 3, stride: 2, using: &rng)
    spreadFunnelWeights(layer, &rng)
    let failures = try layerGradientFailures(layer, Tensor.randomNormal([2, 3, 5, 6], using: &rng))
    #expect(failures.isEmpty, "\(failures.prefix(5))")
  }

  // MARK: meta-ACON

  /// The fused pixel-wise kernel (beta recomputed in the pullback) against the separate ops
  /// it replaces (taken when a beta observer is set).
  @Test(arguments: [ACONGate.sigmoid, .hardSigmoid])
  func fusedPixelWiseMatchesSeparateOps(gate: ACONGate) throws {
    var rng = RandomGenerator(seed: 21)
    let layer = MetaAconC(channels: 3, generator: .pixel, gate: gate, using: &rng)
    layer.affine!.weight.value = Tensor.randomNormal([1, 3, 1, 1], using: &rng)
    layer.affine!.bias.value = Tensor.randomNormal([1, 3, 1, 1], using: &rng)
    for shape in [[2, 3, 5, 5], [4, 3]] {
      let x = Tensor.randomNormal(shape, std: 2, using: &rng)
      let r = Tensor.randomNormal(shape, using: &rng)
      func run(observed: Bool) throws -> [Tensor] {
        layer.betaObserver = observed ? { _ in } : nil
        layer.zeroGrad()
        let input = Parameter(x)
        let y = try layer(input.value)
        try (y * r).sum().backward()
        return [y, input.grad!] + layer.parameters.map { $0.grad! }
      }
      let fused = try run(observed: false)
      let separate = try run(observed: true)
      for (a, b) in zip(fused, separate) {
        #expect(
          maxAbsDifference(a, b) <= 1e-5 * max(1, b.scalars.map { abs($0) }.max()!), "\(shape)")
      }
    }
    layer.betaObserver = nil
    let failures = try layerGradientFailures(layer, Tensor.randomNormal([2, 3, 3, 3], using: &rng))
    #expect(failures.isEmpty, "\(failures.prefix(4))")
  }

  @Test func referenceMetaAconRefusesBatchOneInTraining() throws {
    var rng = RandomGenerator(seed: 8)
    let layer = MetaAconC(channels: 32, using: &rng)
    let x = Tensor.randomNormal([1, 32, 4, 4], using: &rng)
    #expect(throws: TensorError.self) { try layer(x) }
    do {
      _ = try layer(x)
    } catch let error as TensorError {
      #expect(error.description.contains("batch of 1"))
      #expect(error.description.contains("meta-acon-bs1"))
    }
    #expect(throws: TensorError.self) { try layer(Tensor.randomNormal([1, 32], using: &rng)) }
    layer.eval()
    let y = try layer(x)
    #expect(y.scalars.allSatisfy { $0.isFinite })
    // The BN-free generator trains at batch size 1.
    let bs1 = MetaAconC(channels: 32, generator: .channelWithoutBatchNorm, using: &rng)
    let p = Parameter(x)
    try bs1(p.value).sum().backward()
    #expect(p.grad!.scalars.allSatisfy { $0.isFinite })
    #expect(bs1.fc1!.weight.grad!.scalars.allSatisfy { $0.isFinite })
    #expect(bs1.fc1!.weight.grad!.scalars.contains { $0 != 0 })
  }

  @Test func metaBetaShapesAndRange() throws {
    var rng = RandomGenerator(seed: 9)
    let x = Tensor.randomNormal([3, 16, 4, 5], using: &rng)
    let expected: [MetaAconC.Generator: [Int]] = [
      .channel: [3, 16, 1, 1], .channelWithoutBatchNorm: [3, 16, 1, 1], .layer: [3, 1, 1, 1],
      .pixel: [3, 16, 4, 5],
    ]
    for (generator, shape) in expected {
      let layer = MetaAconC(channels: 16, reduction: 4, generator: generator, using: &rng)
      let beta = try layer.generateBeta(x)
      #expect(beta.shape == shape, "\(generator)")
      #expect(beta.scalars.allSatisfy { $0 > 0 && $0 < 1 })
    }
    // Layer-wise starts as sigmoid(mean of the sample); pixel-wise as sigmoid(x).
    let layerWise = MetaAconC(channels: 16, generator: .layer, using: &rng)
    let b = try layerWise.generateBeta(x)
    let mean0 = x.scalars.prefix(16 * 20).map(Double.init).reduce(0, +) / 320
    #expect(abs(Double(b.data[0]) - ACONMath.sigmoid(mean0)) < 1e-5)
    let pixel = try MetaAconC(channels: 16, generator: .pixel, using: &rng).generateBeta(x)
    #expect(abs(Double(pixel.data[7]) - ACONMath.sigmoid(Double(x.data[7]))) < 1e-6)
  }

  // MARK: Names, order, initialisation

  @Test func parameterNamesFollowTheReference() throws {
    var rng = RandomGenerator(seed: 10)
    let aconC = AconC(channels: 8, using: &rng)
    #expect(aconC.namedParameters().map(\.0) == ["p1", "p2", "beta"])
    #expect(aconC.parameters.allSatisfy { $0.value.shape == [1, 8, 1, 1] && !$0.decays })
    let meta = MetaAconC(channels: 64, using: &rng)
    #expect(
      meta.namedParameters().map(\.0) == [
        "p1", "p2", "fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight", "fc2.bias",
        "bn2.weight", "bn2.bias",
      ])
    #expect(meta.hiddenChannels == 16)
    #expect(meta.fc1!.weight.value.shape == [16, 64, 1, 1])
    #expect(meta.fc2!.weight.value.shape == [64, 16, 1, 1])
    #expect(MetaAconC(channels: 1024, using: &rng).hiddenChannels == 64)
    #expect(MetaAconC(channels: 48, reduction: 8, using: &rng).hiddenChannels == 8)
    let stateNames = meta.stateEntries().map(\.name)
    #expect(
      stateNames.contains("bn1.running_mean") && stateNames.contains("bn2.num_batches_tracked"))
    let frelu = AconFReLU(channels: 4, using: &rng)
    #expect(
      frelu.namedParameters().map(\.0) == [
        "conv_frelu.weight", "conv_frelu.bias", "bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias",
      ])
    #expect(frelu.convFReLU.weight.value.shape == [4, 1, 3, 3])
    // The PyTorch script saw the same names.
    let g = try golden()
    let metaNames = Set(
      g.keys.filter { $0.hasPrefix("meta.param.") }.map { String($0.dropFirst(11)) })
    #expect(metaNames == Set(meta.namedParameters().map(\.0)))
    let freluNames = Set(
      g.keys.filter { $0.hasPrefix("frelu.param.") }.map { String($0.dropFirst(12)) })
    #expect(freluNames == Set(frelu.namedParameters().map(\.0)))
  }

  @Test func referenceInitialisation() {
    var rng = RandomGenerator(seed: 11)
    let layer = AconC(channels: 4096, using: &rng)
    #expect(layer.beta.value.scalars.allSatisfy { $0 == 1 })
    for p in [layer.p1, layer.p2] {
      let v = p.value.scalars.map(Double.init)
      let mean = v.reduce(0, +) / Double(v.count)
      let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
      #expect(abs(mean) < 0.05 && abs(std - 1) < 0.05)
    }
    #expect(layer.p1.value.scalars != layer.p2.value.scalars)
  }

  // MARK: Golden values from PyTorch (scripts/golden/acon.py)

  @Test(arguments: ["aconc", "aconc2d", "aconchard"])
  func aconCMatchesPyTorch(prefix: String) throws {
    let g = try golden()
    let layer = AconC(
      p1: g["\(prefix).param.p1"]!, p2: g["\(prefix).param.p2"]!,
      beta: g["\(prefix).param.beta"]!, gate: prefix == "aconchard" ? .hardSigmoid : .sigmoid)
    let x = Parameter(g["\(prefix).x"]!)
    let y = try layer(x.value)
    try y.backward(seed: g["\(prefix).g"]!)
    #expect(close(y, g["\(prefix).y"]!, 1e-6))
    #expect(close(x.grad!, g["\(prefix).grad.x"]!, 1e-5))
    #expect(close(layer.p1.grad!, g["\(prefix).grad.p1"]!, 1e-5))
    #expect(close(layer.p2.grad!, g["\(prefix).grad.p2"]!, 1e-5))
    #expect(close(layer.beta.grad!, g["\(prefix).grad.beta"]!, 1e-5))
  }

  @Test func metaAconMatchesPyTorch() throws {
    let g = try golden()
    var rng = RandomGenerator(seed: 0)
    let layer = MetaAconC(channels: 32, using: &rng)
    try check(layer, prefix: "meta", golden: g)
  }

  @Test(arguments: [1, 2])
  func aconFReLUMatchesPyTorch(stride: Int) throws {
    let g = try golden()
    var rng = RandomGenerator(seed: 0)
    try check(
      AconFReLU(channels: 4, stride: stride, using: &rng), prefix: stride == 1 ? "frelu" : "frelu2",
      golden: g)
  }

  private func check(_ layer: Module, prefix: String, golden g: [String: Tensor]) throws {
    for (name, p) in layer.namedParameters() {
      let value = try #require(g["\(prefix).param.\(name)"], "\(name)")
      #expect(value.shape == p.value.shape, "\(name)")
      p.value = value.copy()
    }
    layer.train()
    let x = Parameter(g["\(prefix).x"]!)
    let y = try layer(x.value)
    try y.backward(seed: g["\(prefix).g"]!)
    #expect(close(y, g["\(prefix).y"]!, 2e-5), "\(prefix) output")
    #expect(close(x.grad!, g["\(prefix).grad.x"]!, 2e-4), "\(prefix) dx")
    for (name, p) in layer.namedParameters() {
      #expect(close(p.grad!, g["\(prefix).grad.\(name)"]!, 2e-4), "\(prefix) grad \(name)")
    }
    for (name, b) in layer.namedBuffers() where !b.storedAsInteger {
      #expect(close(b.value, g["\(prefix).buffer.\(name)"]!, 1e-5), "\(prefix) buffer \(name)")
    }
  }

  // MARK: Registry and errors

  @Test func registryNames() throws {
    #expect(
      ActivationKind.names == [
        "relu", "swish", "acon-a", "acon-b", "acon-c", "meta-acon", "meta-acon-layer",
        "meta-acon-pixel", "meta-acon-bs1", "acon-c-hard", "meta-acon-hard", "acon-frelu",
      ])
    #expect(ActivationKind(name: "ACON_C") == .aconC)
    #expect(ActivationKind(name: "acon-d") == nil)
    do {
      _ = try ActivationKind.named("acon-d")
      Issue.record("no error for an unknown name")
    } catch let error as TensorError {
      #expect(error.description.contains("acon-d") && error.description.contains("meta-acon-bs1"))
    }
  }

  @Test func badInputsThrow() throws {
    var rng = RandomGenerator(seed: 12)
    let layer = AconC(channels: 4, using: &rng)
    #expect(throws: TensorError.self) { try layer(Tensor.zeros([2, 5, 3, 3])) }
    #expect(throws: TensorError.self) { try layer(Tensor.zeros([2, 4, 3])) }
    let x = Tensor.zeros([2, 4, 3, 3])
    let p = Tensor.zeros([1, 4, 1, 1])
    #expect(throws: TensorError.self) {
      try Tensor.acon(x, p1: p, p2: p, beta: Tensor.zeros([1, 3, 1, 1]))
    }
    #expect(throws: TensorError.self) {
      try Tensor.acon(x, p1: Tensor.zeros([1, 5, 1, 1]), p2: p, beta: p)
    }
    #expect(throws: TensorError.self) {
      try Tensor.acon(x, p1: p, p2: p, beta: Tensor.zeros([2, 4, 3, 1]))
    }
    #expect(throws: TensorError.self) { try Tensor.smoothMaximum(x, Tensor.zeros([2, 4, 3, 2])) }
    #expect(throws: TensorError.self) {
      try MetaAconC(channels: 4, using: &rng)(Tensor.zeros([2, 3]))
    }
  }
}
