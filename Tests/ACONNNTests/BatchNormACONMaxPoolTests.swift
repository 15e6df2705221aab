import ACONKernels
import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

/// A convolution, batch norm, ACON and the max pool after them (ShuffleNetV2's stem) with the
/// last three as one op (``Sequential/forward(_:thenMaxPool:)``) against the pool run after
/// the fused batch norm + ACON, and against finite differences.
@Suite("Batch norm + ACON fused with the max pool after it")
struct BatchNormACONMaxPoolTests {
  static let pool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)

  /// A stem: 3x3 convolution, then ``BatchNormACONTests/pair(_:channels:seed:)``'s layers.
  static func stem(_ name: String, inputs: Int, channels: Int, seed: UInt64) -> Sequential {
    var rng = RandomGenerator(seed: seed)
    let conv = Conv2d(
      inputChannels: inputs, outputChannels: channels, kernelSize: 3, padding: 1, bias: false,
      using: &rng)
    let pair = BatchNormACONTests.pair(name, channels: channels, seed: seed + 1)
    return Sequential([conv] + pair.layers)
  }

  /// Output, every gradient (input first) and the running statistics after one pass of
  /// `forward` in training mode.
  static func run(_ layers: Sequential, _ x: Tensor, _ forward: (Tensor) throws -> Tensor)
    throws -> [(String, Tensor)]
  {
    layers.train()
    let input = Parameter(x)
    let y = try forward(input.value)
    var rng = RandomGenerator(seed: 5)
    try (y * Tensor.randomNormal(y.shape, using: &rng)).sum().backward()
    var out: [(String, Tensor)] = [("y", y), ("dx", input.grad!)]
    for (name, p) in layers.namedParameters() {
      out.append(("d" + name, p.grad ?? Tensor.zeros(p.value.shape)))
    }
    for (name, b) in layers.namedBuffers() { out.append((name, b.value)) }
    return out
  }

  /// Planes the fused op takes at either vector width: larger than sixteen vectors (19x21 ends
  /// with a partial vector; 32x32 does not) and smaller than one (2x3); and a size it leaves to
  /// the two ops (9x9, whose backward runs channel by channel at 8 and at 16 lanes). The same
  /// bits either way, for every output.
  @Test(
    arguments: ["acon-c", "acon-c-hard", "meta-acon", "meta-acon-layer"],
    [[2, 3, 19, 21], [2, 2, 32, 32], [9, 3, 2, 3], [2, 3, 9, 9]])
  func fusedMatchesPoolAfterTheLayer(_ name: String, _ shape: [Int]) throws {
    var rng = RandomGenerator(seed: 12)
    let x = try Tensor.randomNormal(shape, std: 2, using: &rng) + Tensor(scalar: 0.4)
    let channels = 4
    let fusedLayers = Self.stem(name, inputs: shape[1], channels: channels, seed: 4)
    let fused = try Self.run(fusedLayers, x) { try fusedLayers.forward($0, thenMaxPool: Self.pool) }
    let apartLayers = Self.stem(name, inputs: shape[1], channels: channels, seed: 4)
    let apart = try Self.run(apartLayers, x) { try Self.pool(try apartLayers($0)) }
    #expect(fused.map(\.0) == apart.map(\.0))
    for ((key, a), (_, b)) in zip(fused, apart) {
      #expect(a.shape == b.shape, "\(name) \(shape) \(key)")
      #expect(maxAbsDifference(a, b) == 0, "\(name) \(shape) \(key)")
    }
    // Both sides of the choice ran: the CPU backend fuses all but the 9x9 planes.
    let activation = Tensor.zeros([shape[0], channels, shape[2], shape[3]])
    let geometry = PoolGeometry(
      height: shape[2], width: shape[3], kernel: 3, stride: 2, padding: 1)
    #expect(
      activation.device.backend.fusesMaxPoolAfterBatchNormACON(activation, pool: geometry)
        == (shape[2] != 9))
  }

  /// The fused op's pullback through the pool, the ACON and the batch statistics, against
  /// finite differences (2x3 planes: the fused path at either vector width). The step is small
  /// because the pool's maxima switch under larger ones: at 1e-2, or on 17x17 planes, the
  /// separate layers' gradients fail the check just as the fused op's do.
  @Test(arguments: ["acon-c", "meta-acon"])
  func fusedGradientsMatchFiniteDifferences(_ name: String) throws {
    var rng = RandomGenerator(seed: 13)
    let layers = BatchNormACONTests.pair(name, channels: 3, seed: 9)
    layers.train()
    let x = Parameter(Tensor.randomNormal([4, 3, 2, 3], std: 1.5, using: &rng))
    var check = GradientCheck(step: 1e-3, relative: 2e-2, absolute: 2e-3)
    check.maximumChecks = 24
    let failures = try check.failures([("x", x)] + layers.namedParameters()) {
      try layers.forward(x.value, thenMaxPool: Self.pool)
    }
    #expect(failures.isEmpty, "\(name): \(failures.prefix(4))")
  }

  /// Arguments either op rejects are rejected.
  @Test func rejectsBadArguments() throws {
    let (c, beta) = (Tensor.ones([2]), Tensor.ones([1, 2, 1, 1]))
    func fused(_ x: Tensor, kernel: Int = 3, padding: Int = 1) throws -> Tensor {
      try Tensor.batchNormAconMaxPool(
        x, weight: c, bias: c, runningMean: c, runningVariance: c, training: true,
        momentum: 0.1, epsilon: 1e-5, p1: c, p2: c, beta: beta, poolKernelSize: kernel,
        poolStride: 2, poolPadding: padding)
    }
    #expect(throws: TensorError.self) { try fused(Tensor.zeros([2, 2])) }
    #expect(throws: TensorError.self) { try fused(Tensor.zeros([2, 3, 8, 8])) }
    #expect(throws: TensorError.self) { try fused(Tensor.zeros([2, 2, 8, 8]), padding: 2) }
    #expect(throws: TensorError.self) { try fused(Tensor.zeros([2, 2, 2, 2]), kernel: 5) }
    var rng = RandomGenerator(seed: 1)
    let y = try fused(Tensor.randomNormal([2, 2, 8, 8], using: &rng))
    #expect(y.shape == [2, 2, 4, 4])
  }
}
