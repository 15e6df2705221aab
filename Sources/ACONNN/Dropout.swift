import ACONTensor

/// Inverted dropout, as PyTorch's `nn.Dropout`: in training mode each element is zeroed with
/// probability `probability` and the rest scaled by `1 / (1 - probability)`; in evaluation mode
/// the layer is the identity.
///
/// The layer owns its generator, seeded at construction, so a run is reproducible; `generator`
/// is public so that a checkpoint can save and restore it for an exact resume.
public final class Dropout: Module {
  public let probability: Float
  /// The generator the masks are drawn from; it advances with every training forward.
  public var generator: RandomGenerator

  public override var settingsDescription: String { "p=\(probability)" }

  /// A dropout layer; `probability` must lie in `[0, 1]`.
  public init(probability: Float = 0.5, seed: UInt64 = 0) {
    precondition(
      probability >= 0 && probability <= 1, "Dropout probability \(probability) is outside [0, 1]")
    self.probability = probability
    generator = RandomGenerator(seed: seed)
    super.init()
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try x.dropout(probability: probability, training: isTraining, using: &generator)
  }
}
