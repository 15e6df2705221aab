import ACONNN
import ACONTensor

/// Makes the layers of a network from one random generator and one activation choice, and
/// applies the reference initialisations after construction.
public final class ModelBuilder {
  /// The activation that replaces the reference's ACON positions.
  public let activationKind: ActivationKind
  /// The generator every random initialisation draws from.
  public var rng: RandomGenerator

  public init(activation: ActivationKind, seed: UInt64) {
    self.activationKind = activation
    self.rng = RandomGenerator(seed: seed)
  }

  /// A convolution with PyTorch's default initialisation (models re-initialise afterwards).
  public func conv(
    _ inputs: Int, _ outputs: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
    groups: Int = 1, bias: Bool = true
  ) -> Conv2d {
    Conv2d(
      inputChannels: inputs, outputChannels: outputs, kernelSize: kernel, stride: stride,
      padding: padding, groups: groups, bias: bias, using: &rng)
  }

  /// A batch normalisation over `channels`.
  public func batchNorm(_ channels: Int) -> BatchNorm2d { BatchNorm2d(channels) }

  /// A fully connected layer.
  public func linear(_ inputs: Int, _ outputs: Int) -> Linear {
    Linear(inputFeatures: inputs, outputFeatures: outputs, bias: true, using: &rng)
  }

  /// The chosen activation over `channels` channels (`reduction` is meta-ACON's r).
  public func activation(_ channels: Int, reduction: Int = 16) -> Module {
    activationKind.make(channels: channels, using: &rng, reduction: reduction)
  }

  /// The reference initialisation of ShuffleNetV2 and TFNet: convolutions N(0, 1/fan-in per
  /// group) except those whose name contains one of `smallConvNames` (N(0, 0.01)), conv biases 0;
  /// batch norms weight 1, bias 1e-4; linear N(0, 0.01), bias 0.
  public func initializeShuffleStyle(_ model: Module, smallConvNames: [String]) {
    for (name, module) in model.namedModules() {
      if let conv = module as? Conv2d {
        let shape = conv.weight.value.shape
        let small = smallConvNames.contains { name.contains($0) }
        let std: Float = small ? 0.01 : 1 / Float(shape[1])
        conv.weight.value = Tensor.randomNormal(shape, std: std, using: &rng)
        if let bias = conv.bias { bias.value = Tensor.zeros(bias.value.shape) }
      } else if let bn = module as? BatchNorm2d {
        bn.runningMean.value = Tensor.zeros([bn.channels])
        bn.weight.value = Tensor.ones(bn.weight.value.shape)
        bn.bias.value = Tensor(shape: bn.bias.value.shape, repeating: 1e-4)
      } else if let fc = module as? Linear {
        fc.weight.value = Tensor.randomNormal(fc.weight.value.shape, std: 0.01, using: &rng)
        if let bias = fc.bias { bias.value = Tensor.zeros(bias.value.shape) }
      }
    }
  }

  /// The reference initialisation of ResNet: Kaiming normal (fan-out, ReLU gain) for
  /// convolutions, batch norms weight 1 and bias 0; linear layers keep PyTorch's default.
  public func initializeResNetStyle(_ model: Module) {
    for (_, module) in model.namedModules() {
      if let conv = module as? Conv2d {
        let shape = conv.weight.value.shape
        let fanOut = shape[0] * shape[2] * shape[3]
        let std = (2 / Float(fanOut)).squareRoot()
        conv.weight.value = Tensor.randomNormal(shape, std: std, using: &rng)
      } else if let bn = module as? BatchNorm2d {
        bn.runningMean.value = Tensor.zeros([bn.channels])
        bn.weight.value = Tensor.ones(bn.weight.value.shape)
        bn.bias.value = Tensor.zeros(bn.bias.value.shape)
      }
    }
  }
}
