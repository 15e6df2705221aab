import ACONTensor

/// A fully connected layer, as PyTorch's `nn.Linear`: `y = x W^T + b` for `x` `[N, in]`.
///
/// Parameters, in PyTorch's order: `weight` `[out, in]` (decays) and `bias` `[out]` (no decay).
/// Both start from PyTorch's default, `U(-1/sqrt(in), 1/sqrt(in))` (Kaiming-uniform with
/// `a = sqrt(5)`), drawn from the generator in that order: weight first, then bias.
public final class Linear: Module {
  public let inputFeatures: Int
  public let outputFeatures: Int
  /// `[out, in]`.
  public let weight: Parameter
  /// `[out]`, or nil for a layer built with `bias: false`.
  public let bias: Parameter?

  public override var settingsDescription: String {
    "in_features=\(inputFeatures), out_features=\(outputFeatures)"
      + (bias == nil ? ", bias=False" : "")
  }

  /// A layer initialised from `rng`, which advances, so that one generator can build a whole
  /// network reproducibly.
  public init(
    inputFeatures: Int, outputFeatures: Int, bias: Bool = true, using rng: inout RandomGenerator
  ) {
    precondition(inputFeatures > 0 && outputFeatures > 0, "Linear needs positive feature counts")
    self.inputFeatures = inputFeatures
    self.outputFeatures = outputFeatures
    let bound = 1 / Float(inputFeatures).squareRoot()
    weight = Parameter(
      Tensor.randomUniform([outputFeatures, inputFeatures], low: -bound, high: bound, using: &rng),
      decays: true)
    self.bias =
      bias
      ? Parameter(Tensor.randomUniform([outputFeatures], low: -bound, high: bound, using: &rng))
      : nil
    super.init()
    register(parameter: weight, as: "weight")
    if let b = self.bias { register(parameter: b, as: "bias") }
  }

  /// A layer initialised from a fresh generator seeded with `seed`.
  public convenience init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true, seed: UInt64)
  {
    var rng = RandomGenerator(seed: seed)
    self.init(inputFeatures: inputFeatures, outputFeatures: outputFeatures, bias: bias, using: &rng)
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try Tensor.linear(x, weight: weight.value, bias: bias?.value)
  }
}
