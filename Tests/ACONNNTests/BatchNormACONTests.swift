import ACONKernels
import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

/// The fused batch norm + activation (``LayerFusion``) against the two layers run separately,
/// and against finite differences.
@Suite("Batch norm fused with the activation")
struct BatchNormACONTests {
  /// The activations with a fused path, by name, for `channels` channels.
  static func activation(_ name: String, _ channels: Int, _ rng: inout RandomGenerator) -> Module {
    switch name {
    case "relu": return ReLU()
    case "acon-c": return AconC(channels: channels, using: &rng)
    case "acon-c-hard": return AconC(channels: channels, gate: .hardSigmoid, using: &rng)
    case "meta-acon": return MetaAconC(channels: channels, reduction: 2, using: &rng)
    case "meta-acon-layer": return MetaAconC(channels: channels, generator: .layer, using: &rng)
    default:
      return MetaAconC(
        channels: channels, reduction: 2, generator: .channelWithoutBatchNorm, using: &rng)
    }
  }

  /// A BN + activation pair with non-trivial BN parameters and running statistics.
  static func pair(_ name: String, channels: Int, seed: UInt64) -> Sequential {
    var rng = RandomGenerator(seed: seed)
    let bn = BatchNorm2d(channels)
    bn.weight.value = Tensor.randomUniform([channels], low: 0.5, high: 1.5, using: &rng)
    bn.bias.value = Tensor.randomNormal([channels], std: 0.5, using: &rng)
    bn.runningMean.value = Tensor.randomNormal([channels], std: 0.3, using: &rng)
    bn.runningVariance.value = Tensor.randomUniform([channels], low: 0.5, high: 2, using: &rng)
    return Sequential([bn, activation(name, channels, &rng)])
  }

  /// Output, every gradient (input first) and the BN's running statistics after one pass.
  static func run(_ layer: Sequential, _ x: Tensor, training: Bool) throws -> [(String, Tensor)] {
    if training { layer.train() } else { layer.eval() }
    let input = Parameter(x)
    let y = try layer(input.value)
    var rng = RandomGenerator(seed: 5)
    try (y * Tensor.randomNormal(y.shape, using: &rng)).sum().backward()
    var out: [(String, Tensor)] = [("y", y), ("dx", input.grad!)]
    for (name, p) in layer.namedParameters() {
      out.append(("d" + name, p.grad ?? Tensor.zeros(p.value.shape)))
    }
    for (name, b) in layer.namedBuffers() { out.append((name, b.value)) }
    return out
  }

  static let names = [
    "relu", "acon-c", "acon-c-hard", "meta-acon", "meta-acon-layer", "meta-acon-bs1",
  ]

  @Test(arguments: names, [true, false])
  func fusedMatchesSeparateLayers(_ name: String, _ training: Bool) throws {
    // 3 x 5 planes of 7 x 5: a plane is not a multiple of 8, so the vector tails run too.
    var rng = RandomGenerator(seed: 11)
    let x = try Tensor.randomNormal([3, 5, 7, 5], std: 2, using: &rng) + Tensor(scalar: 0.7)
    let fused = try Self.run(Self.pair(name, channels: 5, seed: 3), x, training: training)
    let separate = try withoutLayerFusion {
      try Self.run(Self.pair(name, channels: 5, seed: 3), x, training: training)
    }
    #expect(fused.map(\.0) == separate.map(\.0))
    for ((key, a), (_, b)) in zip(fused, separate) {
      let scale = max(1, b.scalars.map { abs($0) }.max() ?? 0)
      #expect(
        maxAbsDifference(a, b) <= 2e-5 * scale, "\(name) \(training ? "train" : "eval") \(key)")
    }
  }

  /// Planes of every size class of the fused backward: a channel at a time across the images up
  /// to 16 vectors (13x13 ends with a partial vector, 16x16 is the largest), plane by plane
  /// beyond (17x17); meta-ACON's beta per sample (channel- and layer-wise) keeps its gradient
  /// per plane in both. Small planes of many channels (4x4 and 7x7, 8192 floats an image and
  /// more) take blocks of channels a few images at a time: blocks of which the last is partial,
  /// and a last group of images shorter than the others.
  @Test(
    arguments: ["acon-c", "acon-c-hard", "meta-acon", "meta-acon-layer"],
    [[2, 3, 13, 13], [2, 3, 16, 16], [2, 3, 17, 17], [5, 520, 4, 4], [6, 171, 7, 7]])
  func fusedMatchesSeparateLayersOnLargerPlanes(_ name: String, _ shape: [Int]) throws {
    var rng = RandomGenerator(seed: 12)
    let x = try Tensor.randomNormal(shape, std: 2, using: &rng) + Tensor(scalar: 0.4)
    let channels = shape[1]
    let fused = try Self.run(Self.pair(name, channels: channels, seed: 4), x, training: true)
    let separate = try withoutLayerFusion {
      try Self.run(Self.pair(name, channels: channels, seed: 4), x, training: true)
    }
    for ((key, a), (_, b)) in zip(fused, separate) {
      if name == "meta-acon" && key.hasSuffix("fc1.bias") {
        // fc1's bias feeds a batch norm in training mode: its gradient is zero but for
        // rounding, which over 171 channels reaches 2e-4 either way (the same bits in every
        // visiting order): both must be that noise, not a gradient.
        #expect(maxAbsDifference(a, Tensor.zeros(a.shape)) <= 1e-3, "\(shape) \(key)")
        #expect(maxAbsDifference(b, Tensor.zeros(b.shape)) <= 1e-3, "\(shape) \(key)")
        continue
      }
      let scale = max(1, b.scalars.map { abs($0) }.max() ?? 0)
      #expect(maxAbsDifference(a, b) <= 2e-5 * scale, "\(name) \(shape) \(key)")
    }
  }

  @Test(arguments: names)
  func fusedGradientsMatchFiniteDifferences(_ name: String) throws {
    var rng = RandomGenerator(seed: 13)
    let layer = Self.pair(name, channels: 4, seed: 9)
    let x = Parameter(Tensor.randomNormal([3, 4, 3, 3], std: 1.5, using: &rng))
    var check = GradientCheck(step: 1e-2, relative: 2e-2, absolute: 2e-3)
    check.maximumChecks = 24
    // The hard gate and ReLU have kinks; their checks step over few of them at this size.
    let failures = try check.failures([("x", x)] + layer.namedParameters()) { try layer(x.value) }
    #expect(failures.isEmpty, "\(name): \(failures.prefix(4))")
  }

  @Test func fusedOpRejectsBadArguments() throws {
    let c = Tensor.ones([2])
    let x = Tensor.zeros([2, 2, 3, 3])
    #expect(throws: TensorError.self) {
      try Tensor.batchNormAcon(
        Tensor.zeros([2, 2]), weight: c, bias: c, runningMean: c, runningVariance: c,
        training: true, momentum: 0.1, epsilon: 1e-5, p1: c, p2: c, beta: c)
    }
    #expect(throws: TensorError.self) {
      try Tensor.batchNormAcon(
        x, weight: c, bias: c, runningMean: c, runningVariance: c, training: true,
        momentum: 0.1, epsilon: 1e-5, p1: Tensor.ones([3]), p2: c, beta: c)
    }
    #expect(throws: TensorError.self) {
      try Tensor.batchNormAcon(
        x, weight: c, bias: c, runningMean: c, runningVariance: c, training: true,
        momentum: 0.1, epsilon: 1e-5, p1: c, p2: c, beta: nil)
    }
  }
}

/// `relu(batchNorm(x) + residual)` as one op (the end of every ResNet block) against the three
/// ops run separately, and against finite differences.
@Suite("Batch norm fused with the residual add and ReLU")
struct BatchNormResidualReLUTests {
  /// Output, the gradients of the input, the residual and the BN's parameters, and the running
  /// statistics after one pass.
  static func run(_ x: Tensor, _ residual: Tensor, training: Bool) throws -> [(String, Tensor)] {
    let bn =
      BatchNormACONTests.pair("relu", channels: x.shape[1], seed: 21).layers[0] as! BatchNorm2d
    if training { bn.train() } else { bn.eval() }
    let (input, shortcut) = (Parameter(x), Parameter(residual))
    let y = try bn.forward(input.value, addingThenReLU: shortcut.value)
    var rng = RandomGenerator(seed: 6)
    try (y * Tensor.randomNormal(y.shape, using: &rng)).sum().backward()
    return [
      ("y", y), ("dx", input.grad!), ("dresidual", shortcut.grad!), ("dweight", bn.weight.grad!),
      ("dbias", bn.bias.grad!), ("running mean", bn.runningMean.value),
      ("running variance", bn.runningVariance.value),
    ]
  }

  @Test(arguments: [true, false], [[3, 5, 7, 5], [4, 6]])
  func fusedMatchesSeparateOps(_ training: Bool, _ shape: [Int]) throws {
    var rng = RandomGenerator(seed: 17)
    let x = try Tensor.randomNormal(shape, std: 2, using: &rng) + Tensor(scalar: 0.3)
    let residual = Tensor.randomNormal(shape, using: &rng)
    let fused = try Self.run(x, residual, training: training)
    let separate = try withoutLayerFusion { try Self.run(x, residual, training: training) }
    for ((key, a), (_, b)) in zip(fused, separate) {
      let scale = max(1, b.scalars.map { abs($0) }.max() ?? 0)
      #expect(a.shape == b.shape, "\(key)")
      #expect(
        maxAbsDifference(a, b) <= 2e-5 * scale, "\(training ? "train" : "eval") \(shape) \(key)")
    }
    // The ReLU gated something and let something through: both branches of the gate ran.
    let y = fused[0].1.scalars
    #expect(y.contains(0) && y.contains { $0 > 0 })
  }

  @Test(arguments: [true, false])
  func gradientsMatchFiniteDifferences(_ training: Bool) throws {
    var rng = RandomGenerator(seed: 19)
    let bn = BatchNormACONTests.pair("relu", channels: 3, seed: 4).layers[0] as! BatchNorm2d
    if training { bn.train() } else { bn.eval() }
    let x = Parameter(Tensor.randomNormal([2, 3, 3, 3], std: 1.5, using: &rng))
    // The residual puts every pre-activation at least 0.3 from the ReLU's kink, which the
    // finite differences' steps (0.01 in one element, up to about 0.1 through a channel's
    // statistics) then never cross.
    let preActivation = Tensor(
      shape: x.value.shape,
      values: Tensor.randomNormal(x.value.shape, using: &rng).scalars.map {
        $0 + ($0 < 0 ? -0.3 : 0.3)
      })
    let residual = Parameter(try preActivation - bn(x.value).detached)
    var check = GradientCheck(step: 1e-2, relative: 2e-2, absolute: 2e-3)
    check.maximumChecks = 24
    // Training normalises with the batch's statistics (the running ones it updates do not
    // feed the output); evaluation with the running ones, left untouched.
    let failures = try check.failures([("x", x), ("residual", residual)] + bn.namedParameters()) {
      try bn.forward(x.value, addingThenReLU: residual.value)
    }
    #expect(failures.isEmpty, "\(failures.prefix(4))")
  }

  @Test func rejectsAResidualOfAnotherShape() throws {
    let c = Tensor.ones([2])
    #expect(throws: TensorError.self) {
      try Tensor.batchNormAddReLU(
        Tensor.zeros([2, 2, 3, 3]), residual: Tensor.zeros([2, 2, 3, 4]), weight: c, bias: c,
        runningMean: c, runningVariance: c, training: true)
    }
  }
}
