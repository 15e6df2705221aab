import ACONNN
import ACONTensor

/// How a zoo network's weights start (`acon train --init`).
///
/// Both start the ACON family's own parameters as the reference modules do: p1, p2 (and
/// ACON-B's p) drawn from N(0, 1), beta 1; the layer-wise meta-ACON generator's 1x1 convolution
/// at the identity (weight 1, bias 0) and the pixel-wise generator's affine map at weight 1,
/// bias 0. They differ in every other layer:
///
/// | layer | `reference` (the reference code's `_initialize_weights`) | `pytorch` (PyTorch's module defaults) |
/// |---|---|---|
/// | `Conv2d` weight, ShuffleNetV2 and TFNet | N(0, 1 / (in / groups)); N(0, 0.01) for the stem (`first_*`, its meta-ACON generator included) and TFNet's `conv_frelu` | U(-b, b), b = 1 / sqrt(fan_in), fan_in = in / groups * k * k (Kaiming-uniform, a = sqrt(5)) |
/// | `Conv2d` weight, ResNet and MobileNet | Kaiming normal, fan-out, ReLU gain | as above |
/// | `Conv2d` bias | 0 (ShuffleNetV2, TFNet); the module default (ResNet, MobileNet) | U(-b, b), the weight's b |
/// | `Linear` weight, bias | N(0, 0.01), 0 (ShuffleNetV2, TFNet); the module default (ResNet, MobileNet) | U(-b, b), b = 1 / sqrt(in), both |
/// | `BatchNorm2d` weight, bias | 1, 1e-4 (ShuffleNetV2, TFNet); 1, 0 (ResNet, MobileNet) | 1, 0 |
/// | `BatchNorm2d` running mean, variance | 0, 1 | 0, 1 |
///
/// The reference's choice was tuned for ImageNet runs of 300k iterations at batch 1024; on a
/// schedule of a few thousand iterations the start decides much of the ranking of the
/// activations (docs/RESULTS.md).
public enum WeightInitialization: String, Codable, CaseIterable, Sendable {
  /// The reference code's initialisation (the paper's): the zoo's default.
  case reference
  /// PyTorch's module defaults, as if the reference's `_initialize_weights` were never called.
  case pytorch

  /// Which layers a re-initialisation touches: the split that tells whether the start of the
  /// meta-ACON generators (the modules inside a `MetaAconC`) or of the rest of the network
  /// decides a result (`acon train --init` with `--generator-init`).
  public enum Scope: Sendable {
    /// Every layer.
    case everything
    /// Only the layers inside meta-ACON generators.
    case generatorsOnly
    /// Every layer but those inside meta-ACON generators.
    case allButGenerators

    func includes(insideGenerator: Bool) -> Bool {
      switch self {
      case .everything: true
      case .generatorsOnly: insideGenerator
      case .allButGenerators: !insideGenerator
      }
    }
  }

  /// Re-draws every convolution and linear layer of `model` in `scope` from PyTorch's default
  /// and resets every batch norm in it (weight 1, bias 0, running statistics 0 and 1, no batches
  /// tracked), in module order, weight before bias; the ACON family's parameters and the
  /// layer-wise and pixel-wise meta-ACON generators keep their values (see the type's table).
  public static func applyPyTorchDefaults(
    to model: Module, scope: Scope = .everything, using rng: inout RandomGenerator
  ) {
    // The layer-wise generator's 1x1 convolution starts at the identity by its own design.
    var identityStarts = Set<ObjectIdentifier>()
    var generators = Set<ObjectIdentifier>()
    for (_, module) in model.namedModules() {
      guard let meta = module as? MetaAconC else { continue }
      if meta.generator == .layer, let fc = meta.fc1 { identityStarts.insert(ObjectIdentifier(fc)) }
      for (path, inner) in meta.namedModules() where !path.isEmpty {
        generators.insert(ObjectIdentifier(inner))
      }
    }
    for (_, module) in model.namedModules() {
      guard scope.includes(insideGenerator: generators.contains(ObjectIdentifier(module))) else {
        continue
      }
      if let conv = module as? Conv2d, !identityStarts.contains(ObjectIdentifier(conv)) {
        let fanIn = conv.inputChannels / conv.groups * conv.kernelSize * conv.kernelSize
        redraw(conv.weight, conv.bias, fanIn: fanIn, using: &rng)
      } else if let fc = module as? Linear {
        redraw(fc.weight, fc.bias, fanIn: fc.weight.value.shape[1], using: &rng)
      } else if let bn = module as? BatchNorm2d {
        bn.weight.value = Tensor.ones([bn.channels])
        bn.bias.value = Tensor.zeros([bn.channels])
        bn.runningMean.value = Tensor.zeros([bn.channels])
        bn.runningVariance.value = Tensor.ones([bn.channels])
        bn.batchesTracked.value = Tensor(scalar: 0)
      }
    }
  }

  /// PyTorch's default for a convolution or linear layer: weight and bias from U(-b, b),
  /// b = 1 / sqrt(fan_in) (Kaiming-uniform with a = sqrt(5) gives this bound for the weight).
  static func redraw(
    _ weight: Parameter, _ bias: Parameter?, fanIn: Int, using rng: inout RandomGenerator
  ) {
    let bound = 1 / Float(fanIn).squareRoot()
    weight.value = Tensor.randomUniform(weight.value.shape, low: -bound, high: bound, using: &rng)
    if let bias {
      bias.value = Tensor.randomUniform(bias.value.shape, low: -bound, high: bound, using: &rng)
    }
  }
}
