import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

/// A convolution's bias before a training-mode batch norm: its gradient is exactly zero (the
/// batch norm takes every per-channel constant out), and ``Conv2d/forward(_:before:)`` gives
/// it as zeros instead of summing rounding noise from the output gradient.
@Suite("Convolution bias before a batch norm")
struct ConvolutionBeforeBatchNormTests {
  /// Output, input gradient and every parameter's gradient of `conv -> batch norm -> ACON-C`
  /// (through `Sequential`), with the batch norm in training or evaluation mode.
  static func run(training: Bool) throws -> [(String, Tensor)] {
    var rng = RandomGenerator(seed: 31)
    let conv = Conv2d(
      inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, bias: true, using: &rng)
    conv.bias!.value = Tensor.randomNormal([4], std: 0.5, using: &rng)
    let layers = Sequential([conv, BatchNorm2d(4), AconC(channels: 4, using: &rng)])
    if training { layers.train() } else { layers.eval() }
    let x = Parameter(Tensor.randomNormal([2, 3, 6, 5], std: 2, using: &rng))
    let y = try layers(x.value)
    try (y * Tensor.randomNormal(y.shape, using: &rng)).sum().backward()
    return [("y", y), ("dx", x.grad!)] + layers.namedParameters().map { ($0.0, $0.1.grad!) }
  }

  @Test func trainingGivesTheBiasExactlyZero() throws {
    let fused = try Self.run(training: true)
    let plain = try withoutLayerFusion { try Self.run(training: true) }
    for ((key, a), (_, b)) in zip(fused, plain) {
      if key == "0.bias" {
        #expect(a.scalars == [Float](repeating: 0, count: 4))
        // Summed, it is rounding noise around the exact zero.
        #expect(b.scalars.allSatisfy { abs($0) < 1e-4 }, "\(b.scalars)")
        #expect(b.scalars.contains { $0 != 0 }, "the plain path sums the output gradient")
      } else {
        let scale = max(1, b.scalars.map { abs($0) }.max() ?? 0)
        #expect(maxAbsDifference(a, b) <= 2e-5 * scale, "\(key)")
      }
    }
  }

  /// In evaluation mode the batch norm keeps the bias's effect, and its gradient is summed.
  @Test func evaluationSumsTheBiasGradient() throws {
    let fused = try Self.run(training: false)
    let bias = try #require(fused.first { $0.0 == "0.bias" }).1
    let plain = try withoutLayerFusion { try Self.run(training: false) }
    let expected = try #require(plain.first { $0.0 == "0.bias" }).1
    #expect(bias.scalars.contains { abs($0) > 1e-2 })
    #expect(maxAbsDifference(bias, expected) <= 1e-5 * max(1, expected.scalars.map(abs).max()!))
  }

  /// The op's flag changes only the bias's gradient: the output and the other gradients are
  /// the same bits.
  @Test func opFlagChangesOnlyTheBiasGradient() throws {
    var rng = RandomGenerator(seed: 8)
    let x = Tensor.randomNormal([2, 3, 7, 7], using: &rng)
    let w = Tensor.randomNormal([5, 3, 3, 3], using: &rng)
    let b = Tensor.randomNormal([5], using: &rng)
    let seed = Tensor.randomNormal([2, 5, 4, 4], using: &rng)
    func run(_ zero: Bool) throws -> [Tensor] {
      let (px, pw, pb) = (Parameter(x), Parameter(w), Parameter(b))
      let y = try Tensor.conv2d(
        px.value, weight: pw.value, bias: pb.value, stride: 2, padding: 1,
        biasGradientIsZero: zero)
      try y.backward(seed: seed)
      return [y, px.grad!, pw.grad!, pb.grad!]
    }
    let (flagged, plain) = (try run(true), try run(false))
    for i in 0..<3 { #expect(maxAbsDifference(flagged[i], plain[i]) == 0) }
    #expect(flagged[3].scalars == [Float](repeating: 0, count: 5))
    #expect(plain[3].scalars.contains { abs($0) > 1e-2 })
  }
}
