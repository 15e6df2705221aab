import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

/// A convolution and the evaluation-mode batch norm after it folded into one convolution
/// (``Tensor/conv2dThenBatchNormEvaluation(_:weight:bias:stride:padding:dilation:groups:batchNormWeight:batchNormBias:runningMean:runningVariance:epsilon:)``,
/// ``Conv2d/forward(_:foldingEvaluation:)``): the values of the two ops, only where no gradient
/// is recorded, and the bad inputs the batch norm refuses.
/// Serialized: its profile tests reset and read the process-wide ``Profiler`` totals.
@Suite("Convolution and batch norm folded for inference", .serialized)
struct ConvolutionBatchNormFoldingTests {
  /// A batch norm with parameters and running statistics away from the identity.
  static func batchNorm(_ channels: Int, _ rng: inout RandomGenerator) -> BatchNorm2d {
    let bn = BatchNorm2d(channels)
    bn.weight.value = Tensor.randomUniform([channels], low: 0.5, high: 1.5, using: &rng)
    bn.bias.value = Tensor.randomNormal([channels], std: 0.5, using: &rng)
    bn.runningMean.value = Tensor.randomNormal([channels], std: 0.3, using: &rng)
    bn.runningVariance.value = Tensor.randomUniform([channels], low: 0.5, high: 2, using: &rng)
    bn.eval()
    return bn
  }

  /// The largest difference relative to the largest value of `b`.
  static func relativeDifference(_ a: Tensor, _ b: Tensor) -> Float {
    maxAbsDifference(a, b) / max(1, b.scalars.map { abs($0) }.max() ?? 0)
  }

  // (input, output channels, kernel, stride, padding, groups, bias)
  @Test(arguments: [
    ([2, 4, 9, 9], 6, 3, 1, 1, 1, true),  // dense 3x3 with a bias
    ([2, 8, 10, 10], 8, 3, 2, 1, 8, false),  // depthwise, stride 2 (ShuffleNetV2's)
    ([3, 16, 7, 7], 24, 1, 1, 0, 1, false),  // 1x1
  ])
  func foldedMatchesTheTwoOps(
    _ shape: [Int], _ outputs: Int, _ kernel: Int, _ stride: Int, _ padding: Int, _ groups: Int,
    _ bias: Bool
  ) throws {
    var rng = RandomGenerator(seed: 21)
    let conv = Conv2d(
      inputChannels: shape[1], outputChannels: outputs, kernelSize: kernel, stride: stride,
      padding: padding, groups: groups, bias: bias, using: &rng)
    let bn = Self.batchNorm(outputs, &rng)
    let x = Tensor.randomNormal(shape, std: 2, using: &rng)
    let separate = try withoutGradients { try bn(conv(x)) }
    let folded = try withoutGradients { try conv.forward(x, foldingEvaluation: bn) }
    let y = try #require(folded)
    #expect(y.shape == separate.shape)
    #expect(Self.relativeDifference(y, separate) <= 1e-5)
  }

  /// `Sequential` folds a convolution and the batch norm after it when no activation fuses with
  /// that batch norm (ShuffleNetV2's depthwise layers), in inference only: the profile of the
  /// forward has no batch norm, and the result is that of the layers run one by one.
  @Test func sequentialFoldsInInferenceOnly() throws {
    var rng = RandomGenerator(seed: 22)
    let depthwise = Conv2d(
      inputChannels: 8, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, groups: 8,
      bias: false, using: &rng)
    let pointwise = Conv2d(
      inputChannels: 8, outputChannels: 8, kernelSize: 1, bias: false, using: &rng)
    let layers = Sequential([depthwise, Self.batchNorm(8, &rng), pointwise])
    layers.eval()
    let x = Tensor.randomNormal([2, 8, 12, 12], using: &rng)
    func profiledOperations(_ body: () throws -> Tensor) rethrows -> (Tensor, Set<String>) {
      Profiler.reset()
      let y = try Profiler.recording(true, body)
      return (y, Set(Profiler.entries().map(\.operation)))
    }
    let (folded, foldedOps) = try profiledOperations { try withoutGradients { try layers(x) } }
    let (separate, separateOps) = try profiledOperations {
      try withoutGradients { try withoutLayerFusion { try layers(x) } }
    }
    let (recorded, recordedOps) = try profiledOperations { try layers(x) }
    #expect(!foldedOps.contains("batchNorm(eval)") && foldedOps.contains("conv2d"))
    #expect(separateOps.contains("batchNorm(eval)"))
    #expect(recordedOps.contains("batchNorm(eval)"))
    #expect(Self.relativeDifference(folded, separate) <= 1e-5)
    #expect(Self.relativeDifference(recorded, separate) <= 1e-6)
  }

  @Test func refusesWhileGradientsAreRecorded() throws {
    var rng = RandomGenerator(seed: 23)
    let conv = Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 1, using: &rng)
    let bn = Self.batchNorm(3, &rng)
    let x = Tensor.randomNormal([1, 2, 4, 4], using: &rng)
    #expect(try conv.forward(x, foldingEvaluation: bn) == nil)
    #expect(throws: TensorError.self) {
      try Tensor.conv2dThenBatchNormEvaluation(
        x, weight: conv.weight.value, bias: nil, batchNormWeight: bn.weight.value,
        batchNormBias: bn.bias.value, runningMean: bn.runningMean.value,
        runningVariance: bn.runningVariance.value, epsilon: 1e-5)
    }
    bn.train()
    #expect(try withoutGradients { try conv.forward(x, foldingEvaluation: bn) } == nil)
  }

  @Test func refusesABadBatchNorm() throws {
    var rng = RandomGenerator(seed: 24)
    let conv = Conv2d(inputChannels: 2, outputChannels: 3, kernelSize: 1, using: &rng)
    let x = Tensor.randomNormal([1, 2, 4, 4], using: &rng)
    func fold(variance: [Float], channels: Int = 3) throws -> Tensor {
      try withoutGradients {
        try Tensor.conv2dThenBatchNormEvaluation(
          x, weight: conv.weight.value, bias: conv.bias?.value,
          batchNormWeight: Tensor.ones([channels]), batchNormBias: Tensor.zeros([channels]),
          runningMean: Tensor.zeros([channels]),
          runningVariance: Tensor(shape: [channels], values: variance), epsilon: 1e-5)
      }
    }
    #expect(try fold(variance: [1, 1, 1]).shape == [1, 3, 4, 4])
    do {
      _ = try fold(variance: [1, -1, 1])
      Issue.record("a negative running variance was accepted")
    } catch let error as TensorError {
      #expect("\(error)".contains("channel 1"))
    }
    #expect(throws: TensorError.self) { try fold(variance: [1, 1], channels: 2) }
  }

  /// The profile charges a linear layer's matrix products to its tape entries (forward: one
  /// product; backward: one per input that wants a gradient), so that `bench --budget` counts
  /// them in the layer's floor.
  @Test func profileCountsALinearLayersProducts() throws {
    var rng = RandomGenerator(seed: 5)
    let layer = Linear(inputFeatures: 6, outputFeatures: 5, bias: true, using: &rng)
    let x = Tensor.randomNormal([4, 6], using: &rng)
    Profiler.reset()
    try Profiler.recording(true) { try layer(x).sum().backward() }
    func flops(_ phase: String) -> Double {
      Profiler.entries().filter { $0.phase == phase && $0.operation == "linear" }
        .reduce(0) { $0 + $1.flops }
    }
    // Only the weight wants a gradient: x is no parameter.
    #expect(flops("forward") == 2 * 4 * 5 * 6)
    #expect(flops("backward") == 2 * 4 * 5 * 6)
  }
}
