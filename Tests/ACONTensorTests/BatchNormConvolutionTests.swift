import ACONTensor
import ACONTestSupport
import Testing

/// `Tensor.batchNormThenConv2d`: a batch norm folded into the 1x1 convolution after it.
@Suite("Batch norm folded into the next 1x1 convolution")
struct BatchNormConvolutionTests {
  /// The inputs of one case: `x` `[2, 6, 5, 4]`, a batch norm over its 6 channels and a
  /// `6 -> 5` 1x1 convolution.
  struct Case {
    var x, gamma, beta, weight, bias, upstream: Tensor

    init(seed: UInt64, mean: Float = 0.5, outputSize: [Int] = [2, 5, 5, 4]) {
      var rng = RandomGenerator(seed: seed)
      x = Tensor.randomNormal([2, 6, 5, 4], mean: mean, std: 1.5, using: &rng)
      gamma = Tensor.randomUniform([6], low: 0.5, high: 1.5, using: &rng)
      beta = Tensor.randomNormal([6], using: &rng)
      weight = Tensor.randomNormal([5, 6, 1, 1], using: &rng)
      bias = Tensor.randomNormal([5], using: &rng)
      upstream = Tensor.randomNormal(outputSize, using: &rng)
    }
  }

  /// Output, the gradients of x, gamma, beta, weight (and bias) and the running statistics
  /// after one call, through the fused op or the two ops.
  static func run(
    _ c: Case, fused: Bool, training: Bool, withBias: Bool = true, stride: Int = 1
  ) throws -> [(String, Tensor)] {
    let (x, gamma, beta, weight) = (
      Parameter(c.x), Parameter(c.gamma), Parameter(c.beta), Parameter(c.weight)
    )
    let bias = withBias ? Parameter(c.bias) : nil
    let (mean, variance) = (Tensor(shape: [6], repeating: 0.2), Tensor(shape: [6], repeating: 1.5))
    let y: Tensor
    if fused {
      y = try Tensor.batchNormThenConv2d(
        x.value, batchNormWeight: gamma.value, batchNormBias: beta.value, runningMean: mean,
        runningVariance: variance, training: training, weight: weight.value, bias: bias?.value,
        stride: stride)
    } else {
      let normalised = try Tensor.batchNorm(
        x.value, weight: gamma.value, bias: beta.value, runningMean: mean,
        runningVariance: variance, training: training)
      y = try Tensor.conv2d(normalised, weight: weight.value, bias: bias?.value, stride: stride)
    }
    try y.backward(seed: c.upstream)
    var out = [
      ("y", y), ("dx", x.grad!), ("dgamma", gamma.grad!), ("dbeta", beta.grad!),
      ("dweight", weight.grad!),
    ]
    if let bias { out.append(("dbias", bias.grad!)) }
    return out + [("running mean", mean), ("running variance", variance)]
  }

  @Test(arguments: [(true, true, 1), (true, false, 1), (false, true, 1), (true, true, 2)])
  func matchesTheTwoOps(training: Bool, withBias: Bool, stride: Int) throws {
    let c = Case(seed: 3, outputSize: stride == 1 ? [2, 5, 5, 4] : [2, 5, 3, 2])
    let fused = try Self.run(c, fused: true, training: training, withBias: withBias, stride: stride)
    let plain = try Self.run(
      c, fused: false, training: training, withBias: withBias, stride: stride)
    for ((name, a), (_, b)) in zip(fused, plain) {
      if name.hasPrefix("running") {
        // The same statistics code updates them: the same bits.
        #expect(a.scalars == b.scalars, "\(name)")
      } else {
        let scale = max(1, b.scalars.map { abs($0) }.max()!)
        #expect(maxAbsDifference(a, b) <= 2e-5 * scale, "\(name)")
      }
    }
  }

  @Test(arguments: [true, false])
  func finiteDifferences(training: Bool) throws {
    let c = Case(seed: 5)
    var check = GradientCheck(step: 1e-2, relative: 2e-2, absolute: 2e-3)
    check.maximumChecks = 24
    let failures = try check.failures([c.x, c.gamma, c.beta, c.weight, c.bias]) { t in
      try Tensor.batchNormThenConv2d(
        t[0], batchNormWeight: t[1], batchNormBias: t[2], runningMean: Tensor.zeros([6]),
        runningVariance: Tensor.ones([6]), training: training, weight: t[3], bias: t[4])
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
  }

  /// Before a training-mode batch norm the convolution's bias gets exactly zero and the weight
  /// gradient drops the term that zero multiplies; the finite differences of the pair agree.
  @Test func zeroBiasGradientBeforeATrainingBatchNorm() throws {
    let c = Case(seed: 9)
    func pair(_ t: [Tensor]) throws -> Tensor {
      let y = try Tensor.batchNormThenConv2d(
        t[0], batchNormWeight: t[1], batchNormBias: t[2], runningMean: nil, runningVariance: nil,
        training: true, weight: t[3], bias: t[4], biasGradientIsZero: true)
      return try Tensor.batchNorm(
        y, weight: nil, bias: nil, runningMean: nil, runningVariance: nil, training: true)
    }
    var check = GradientCheck(step: 1e-2, relative: 2e-2, absolute: 2e-3)
    check.maximumChecks = 24
    let failures = try check.failures([c.x, c.gamma, c.beta, c.weight, c.bias], pair)
    #expect(failures.isEmpty, "\(failures.prefix(5))")
    let bias = Parameter(c.bias)
    let y = try pair([c.x, c.gamma, c.beta, c.weight, bias.value])
    try y.backward(seed: c.upstream)
    #expect(bias.grad!.scalars == [Float](repeating: 0, count: 5))
  }

  /// A channel whose mean is far from zero against its spread runs the two ops: the same bits.
  @Test func largeMeansRunTheTwoOps() throws {
    let c = Case(seed: 11, mean: 500)
    let fused = try Self.run(c, fused: true, training: true)
    let plain = try Self.run(c, fused: false, training: true)
    for ((name, a), (_, b)) in zip(fused, plain) { #expect(a.scalars == b.scalars, "\(name)") }
  }

  @Test func refusesWhatItCannotFold() throws {
    let c = Case(seed: 1)
    let (mean, variance) = (Tensor.zeros([6]), Tensor.ones([6]))
    #expect(throws: TensorError.self) {
      try Tensor.batchNormThenConv2d(
        c.x, batchNormWeight: c.gamma, batchNormBias: c.beta, runningMean: mean,
        runningVariance: variance, training: true,
        weight: Tensor.zeros([5, 6, 3, 3]), bias: nil)
    }
    #expect(throws: TensorError.self) {
      try Tensor.batchNormThenConv2d(
        c.x, batchNormWeight: Tensor.ones([5]), batchNormBias: c.beta, runningMean: mean,
        runningVariance: variance, training: true, weight: c.weight, bias: nil)
    }
    #expect(throws: TensorError.self) {
      try Tensor.batchNormThenConv2d(
        c.x, batchNormWeight: c.gamma, batchNormBias: c.beta, runningMean: mean,
        runningVariance: variance, training: true, weight: Tensor.zeros([5, 4, 1, 1]), bias: nil)
    }
  }
}
