import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("Autodiff and basic ops")
struct AutodiffTests {
  var rng = RandomGenerator(seed: 42)

  @Test mutating func broadcastArithmeticGradients() throws {
    let a = Tensor.randomNormal([2, 3, 4, 5], using: &rng)
    let b = Tensor.randomNormal([1, 3, 1, 1], using: &rng)
    let c = Tensor.randomNormal([2, 3, 1, 1], using: &rng)
    let check = GradientCheck()
    #expect(try check.failures([a, b, c]) { x in try (x[0] * x[1] + x[2]) - x[0] * x[2] }.isEmpty)
  }

  @Test mutating func linearAndLossGradients() throws {
    let x = Tensor.randomNormal([4, 6], using: &rng)
    let w = Tensor.randomNormal([5, 6], using: &rng)
    let b = Tensor.randomNormal([5], using: &rng)
    let check = GradientCheck()
    #expect(
      try check.failures([x, w, b]) { t in try Tensor.linear(t[0], weight: t[1], bias: t[2]) }
        .isEmpty)
    #expect(
      try check.failures([x]) { t in
        try Tensor.crossEntropy(logits: t[0], labels: [0, 5, 2, 3], labelSmoothing: 0.1)
      }.isEmpty)
  }

  @Test mutating func valueUsedTwiceAccumulates() throws {
    let p = Parameter(Tensor(shape: [3], values: [1, 2, 3]))
    let y = try (p.value * p.value + p.value).sum()
    try y.backward()
    #expect(p.grad!.scalars == [3, 5, 7])
  }

  @Test mutating func shapeOpsGradients() throws {
    let a = Tensor.randomNormal([2, 4, 3, 3], using: &rng)
    let b = Tensor.randomNormal([2, 2, 3, 3], using: &rng)
    let check = GradientCheck()
    #expect(
      try check.failures([a, b]) { t in
        let (even, odd) = try t[0].splitChannelsByParity()
        let cat = try Tensor.concatChannels([odd, t[1], even])
        return try cat.narrowChannels(start: 1, count: 4).spatialMean().relu()
          .sigmoid().reshaped([2, -1])
      }.isEmpty)
  }

  @Test mutating func channelSplitGradientsAddUp() throws {
    let a = Tensor.randomNormal([2, 4, 3, 3], using: &rng)
    let check = GradientCheck()
    // The split's input feeds another op too (its gradient is then not the split's alone),
    // and one half is used twice.
    #expect(
      try check.failures([a]) { t in
        let (even, odd) = try t[0].splitChannelsByParity()
        let mixed = try Tensor.concatChannels([odd, even]) * t[0].sigmoid()
        let twice = try Tensor.concatChannels([even, even]).relu()
        return try (mixed + twice).spatialMean().reshaped([2, -1])
      }.isEmpty)
    // Only one half is used: the other half's planes get zero.
    #expect(
      try check.failures([a]) { t in
        try t[0].splitChannelsByParity().odd.sigmoid().spatialMean().reshaped([2, -1])
      }.isEmpty)
    let p = Parameter(a)
    try p.value.splitChannelsByParity().even.sum().backward()
    #expect(p.grad!.scalars == (0..<72).map { ($0 / 9) % 2 == 0 ? 1 : 0 })
  }

  /// A convolution whose input also feeds other ops adds its input gradient to theirs in place
  /// (the matrix-product paths: 1x1 on 6x6 with 3 channels, 3x3 stride 2): in either order on
  /// the tape, with two convolutions sharing the input, and with the input used by nothing else.
  @Test mutating func convolutionInputGradientsAddUp() throws {
    let x = Tensor.randomNormal([2, 3, 6, 6], using: &rng)
    let w1 = Tensor.randomNormal([5, 3, 1, 1], using: &rng)
    let w3 = Tensor.randomNormal([4, 3, 3, 3], using: &rng)
    let check = GradientCheck()
    try expectNone(
      check.failures([x, w1]) { t in
        let a = try Tensor.conv2d(t[0], weight: t[1], bias: nil)
        return try (a.spatialMean() + t[0].sigmoid().spatialMean().sum()).reshaped([2, -1])
      })
    try expectNone(
      check.failures([x, w1, w3]) { t in
        let shortcut = try t[0].sigmoid().spatialMean()
        let a = try Tensor.conv2d(t[0], weight: t[1], bias: nil).spatialMean()
        let b = try Tensor.conv2d(t[0], weight: t[2], bias: nil, stride: 2, padding: 1)
          .spatialMean()
        return try Tensor.concatChannels([
          a.reshaped([2, 5, 1, 1]), b.reshaped([2, 4, 1, 1]), shortcut.reshaped([2, 3, 1, 1]),
        ]).reshaped([2, -1])
      })
    try expectNone(
      check.failures([x, w3]) { t in
        try Tensor.conv2d(t[0], weight: t[1], bias: nil, stride: 2, padding: 1).spatialMean()
          .reshaped([2, -1])
      })
  }

  @Test func parityAndConcatValues() throws {
    let x = Tensor(shape: [1, 4, 1, 1], values: [0, 1, 2, 3])
    let (even, odd) = try x.splitChannelsByParity()
    #expect(even.scalars == [0, 2])
    #expect(odd.scalars == [1, 3])
    #expect(try Tensor.concatChannels([odd, even]).scalars == [1, 3, 0, 2])
  }

  @Test func shapeErrorsNameTheOp() throws {
    let a = Tensor.zeros([2, 3])
    let b = Tensor.zeros([4, 5])
    #expect(throws: TensorError.self) { try a + b }
    do {
      _ = try Tensor.matmul(a, b)
      Issue.record("matmul accepted mismatched shapes")
    } catch let e as TensorError {
      #expect(e.description.contains("matmul"))
      #expect(e.description.contains("[2, 3]"))
    }
  }

  @Test func crossEntropyMatchesClosedForm() throws {
    // Uniform logits: loss is log(K) whatever the smoothing.
    let logits = Tensor.zeros([2, 4])
    let loss = try Tensor.crossEntropy(logits: logits, labels: [1, 3], labelSmoothing: 0.1)
    #expect(abs(loss.item - Float(log(4.0))) < 1e-6)
    #expect(throws: TensorError.self) { try Tensor.crossEntropy(logits: logits, labels: [1, 4]) }
  }

  @Test func noGradModeRecordsNothing() throws {
    let p = Parameter(Tensor(shape: [2], values: [1, 2]))
    let y = withoutGradients { p.value.scaled(2) }
    #expect(!y.requiresGrad)
    #expect(p.value.requiresGrad)
  }

  /// Records the gradient check's failures, by name, when there are any.
  func expectNone(_ failures: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(failures.isEmpty, "\(failures)", sourceLocation: sourceLocation)
  }
}
