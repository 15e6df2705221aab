// The code of the "Adding a layer" article (Sources/ACONNN/Documentation.docc/AddingALayer.md),
// compiled and tested here so that the article stays true. Change both together.
import ACONNN
import ACONTensor
import ACONTestSupport
import Testing

extension Tensor {
  /// Softsign, `x / (1 + |x|)`, elementwise. Its pullback keeps only `x`:
  /// `dx = g / (1 + |x|)^2`.
  func softsign() -> Tensor {
    let xs = scalars
    let y = Tensor(shape: shape, values: xs.map { $0 / (1 + abs($0)) })
    return Tensor.record("softsign", output: y, inputs: [self]) { g in
      let dx = zip(g.scalars, xs).map { g, x in g / ((1 + abs(x)) * (1 + abs(x))) }
      return [Tensor(shape: g.shape, values: dx)]
    }
  }
}

/// `alpha_c softsign(x)` with a learnable scale per channel, for `[N, C, H, W]` input.
final class ScaledSoftsign: Module {
  let channels: Int
  /// `[1, C, 1, 1]`, initialised to 1.
  let alpha: Parameter

  init(channels: Int) {
    self.channels = channels
    alpha = Parameter(Tensor(shape: [1, channels, 1, 1], repeating: 1))
    super.init()
    register(parameter: alpha, as: "alpha")
  }

  override func forward(_ x: Tensor) throws -> Tensor {
    try x.softsign() * alpha.value
  }
}

@Suite struct AddingALayerTests {
  @Test func softsignValues() {
    let y = Tensor(shape: [4], values: [-3, 0, 1, 4]).softsign()
    #expect(y.scalars == [-0.75, 0, 0.5, 0.8])
  }

  @Test func softsignPullbackMatchesFiniteDifferences() throws {
    var rng = RandomGenerator(seed: 3)
    let x = Tensor.randomNormal([2, 3, 4, 4], using: &rng)
    let failures = try GradientCheck().failures([x]) { $0[0].softsign() }
    #expect(failures.isEmpty, "\(failures)")
  }

  @Test func layerGradientsMatchFiniteDifferences() throws {
    var rng = RandomGenerator(seed: 4)
    let layer = ScaledSoftsign(channels: 3)
    layer.alpha.value = Tensor.randomNormal([1, 3, 1, 1], using: &rng)
    let input = Parameter(Tensor.randomNormal([2, 3, 4, 4], using: &rng))
    let failures = try GradientCheck().failures([("input", input)] + layer.namedParameters()) {
      try layer(input.value)
    }
    #expect(failures.isEmpty, "\(failures)")
  }

  @Test func stateDictHasTheRegisteredName() {
    let layer = ScaledSoftsign(channels: 3)
    #expect(layer.stateDict().map(\.0) == ["alpha"])
    #expect(layer.parameters.count == 1)
  }
}
