import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

/// `Sequential` folds a training-mode batch norm into the 1x1 convolution after it
/// (``Conv2d/forward(_:after:before:)``), as in ShuffleNetV2's branches: depthwise
/// convolution, batch norm, 1x1 convolution, batch norm + ACON.
@Suite("Batch norm before a 1x1 convolution in Sequential")
struct BatchNormBeforeConvolutionTests {
  /// A ShuffleNetV2 branch after its first 1x1 layer.
  static func branch(seed: UInt64) -> Sequential {
    var rng = RandomGenerator(seed: seed)
    return Sequential([
      Conv2d(
        inputChannels: 8, outputChannels: 8, kernelSize: 3, padding: 1, groups: 8, using: &rng),
      BatchNorm2d(8),
      Conv2d(inputChannels: 8, outputChannels: 16, kernelSize: 1, using: &rng),
      BatchNorm2d(16),
      AconC(channels: 16, using: &rng),
    ])
  }

  /// Output, input gradient, every parameter's gradient and every buffer after two training
  /// steps' forward and backward passes.
  static func run() throws -> [(String, Tensor)] {
    let layers = branch(seed: 4)
    layers.train()
    var rng = RandomGenerator(seed: 12)
    var results: [(String, Tensor)] = []
    for step in 0..<2 {
      let x = Parameter(Tensor.randomNormal([4, 8, 7, 7], mean: 0.3, std: 2, using: &rng))
      for (_, p) in layers.namedParameters() { p.zeroGrad() }
      let y = try layers(x.value)
      try y.backward(seed: Tensor.randomNormal(y.shape, using: &rng))
      results += [("y \(step)", y), ("dx \(step)", x.grad!)]
      results += layers.namedParameters().map { ("\($0.0) grad \(step)", $0.1.grad!) }
    }
    return results + layers.namedBuffers().map { ($0.0, $0.1.value) }
  }

  @Test func matchesTheSeparateLayers() throws {
    let fused = try Self.run()
    let plain = try withoutLayerFusion { try Self.run() }
    #expect(fused.map(\.0) == plain.map(\.0))
    for ((name, a), (_, b)) in zip(fused, plain) {
      if name.hasSuffix("2.bias grad 0") || name.hasSuffix("2.bias grad 1") {
        // Before the training batch norm: exactly zero, where the separate layers sum noise.
        #expect(a.scalars.allSatisfy { $0 == 0 }, "\(name)")
        #expect(b.scalars.allSatisfy { abs($0) < 1e-4 }, "\(name): \(b.scalars)")
      } else if name.contains("running") || name.contains("num_batches") {
        #expect(maxAbsDifference(a, b) <= 1e-6 * max(1, b.scalars.map(abs).max()!), "\(name)")
      } else {
        let scale = max(1, b.scalars.map { abs($0) }.max()!)
        #expect(maxAbsDifference(a, b) <= 3e-5 * scale, "\(name)")
      }
    }
    let batches = try #require(fused.first { $0.0 == "1.num_batches_tracked" }).1
    #expect(batches.scalars == [2])
  }

  /// In evaluation mode the batch norm runs as its own layer (the depthwise convolution takes it
  /// in inference): the same bits with or without fusion for the pair.
  @Test func evaluationKeepsTheLayers() throws {
    let layers = Self.branch(seed: 6)
    layers.eval()
    var rng = RandomGenerator(seed: 2)
    let input = Tensor.randomNormal([2, 8, 5, 5], using: &rng)
    let seed = Tensor.randomNormal([2, 16, 5, 5], using: &rng)
    func run() throws -> [Tensor] {
      let x = Parameter(input)
      let y = try layers(x.value)
      try y.backward(seed: seed)
      return [y, x.grad!]
    }
    let (fused, plain) = (try run(), try withoutLayerFusion { try run() })
    #expect(maxAbsDifference(fused[0], plain[0]) == 0)
    #expect(maxAbsDifference(fused[1], plain[1]) == 0)
  }
}
