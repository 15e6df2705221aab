import ACONNN
import ACONTensor

/// MobileNetV1 (Howard et al. 2017) with the chosen activation at every ReLU position.
///
/// The ACON reference has no MobileNet code, so the layout is ours: `features.0` is the stem
/// (3x3 stride-2 conv, BN, activation), `features.1` ... `features.13` the depthwise-separable
/// blocks (`0` depthwise 3x3 conv, `1` BN, `2` activation, `3` pointwise conv, `4` BN, `5`
/// activation), then global average pooling and `classifier` (linear). Convolutions have no
/// bias (the usual MobileNet). Initialisation: Kaiming normal (fan-out) convolutions, BN 1/0,
/// linear N(0, 0.01).
public final class MobileNetV1: Module {
  /// The width multipliers the zoo offers.
  public static let widths = ["0.25", "0.5", "0.75", "1.0"]
  static let blockChannels = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
  static let blockStrides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]

  public let features: Sequential
  public let classifier: Linear

  init(width: Double, configuration: ModelConfiguration, builder b: ModelBuilder) throws {
    func scaled(_ c: Int) -> Int { max(8, Int(Double(c) * width)) }
    var input = scaled(32)
    var layers: [Module] = [
      Sequential([
        b.conv(
          configuration.inputChannels, input, kernel: 3,
          stride: configuration.smallInput ? 1 : 2, padding: 1, bias: false),
        b.batchNorm(input), b.activation(input),
      ])
    ]
    for (c, s) in zip(Self.blockChannels, Self.blockStrides) {
      let output = scaled(c)
      layers.append(
        Sequential([
          b.conv(input, input, kernel: 3, stride: s, padding: 1, groups: input, bias: false),
          b.batchNorm(input), b.activation(input),
          b.conv(input, output, kernel: 1, bias: false), b.batchNorm(output), b.activation(output),
        ]))
      input = output
    }
    features = Sequential(layers)
    classifier = b.linear(input, configuration.classes)
    super.init()
    register(features, as: "features")
    register(classifier, as: "classifier")
    b.initializeResNetStyle(self)
    classifier.weight.value = Tensor.randomNormal(
      classifier.weight.value.shape, std: 0.01, using: &b.rng)
    if let bias = classifier.bias { bias.value = Tensor.zeros(bias.value.shape) }
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try classifier(try features(x).spatialMean().flattened())
  }
}

/// MobileNetV2 (Sandler et al. 2018) in torchvision's layout and names (`features.N.conv`,
/// `classifier.1`), with the chosen activation in place of ReLU6 in the stem, the expansion and
/// depthwise convolutions of every inverted residual, and the last 1x1 convolution; the
/// projection stays linear. The `relu` baseline uses ReLU where torchvision uses ReLU6.
public final class MobileNetV2: Module {
  /// The width multipliers the zoo offers (the paper's 0.17 to 1.4).
  public static let widths = ["0.17", "0.35", "0.5", "0.6", "0.75", "1.0", "1.4"]
  /// (expansion t, channels c, repeats n, stride s) per stage.
  static let settings = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
  ]

  public let features: Sequential
  public let classifier: Sequential

  /// torchvision's rounding of channel counts to multiples of 8.
  static func divisible(_ v: Double, by divisor: Int = 8) -> Int {
    var rounded = max(divisor, Int(v + Double(divisor) / 2) / divisor * divisor)
    if Double(rounded) < 0.9 * v { rounded += divisor }
    return rounded
  }

  init(width: Double, configuration: ModelConfiguration, builder b: ModelBuilder) throws {
    var input = Self.divisible(32 * width)
    let last = Self.divisible(1280 * max(1, width))
    var layers: [Module] = [
      Sequential([
        b.conv(
          configuration.inputChannels, input, kernel: 3,
          stride: configuration.smallInput ? 1 : 2, padding: 1, bias: false),
        b.batchNorm(input), b.activation(input),
      ])
    ]
    for (t, c, n, s) in Self.settings {
      let output = Self.divisible(Double(c) * width)
      for i in 0..<n {
        layers.append(
          InvertedResidual(
            inputs: input, outputs: output, stride: i == 0 ? s : 1, expansion: t, builder: b))
        input = output
      }
    }
    layers.append(
      Sequential([
        b.conv(input, last, kernel: 1, bias: false), b.batchNorm(last), b.activation(last),
      ]))
    features = Sequential(layers)
    classifier = Sequential([
      Dropout(probability: 0.2, seed: b.rng.next()), b.linear(last, configuration.classes),
    ])
    super.init()
    register(features, as: "features")
    register(classifier, as: "classifier")
    b.initializeResNetStyle(self)
    if let fc = classifier.layers[1] as? Linear {
      fc.weight.value = Tensor.randomNormal(fc.weight.value.shape, std: 0.01, using: &b.rng)
      if let bias = fc.bias { bias.value = Tensor.zeros(bias.value.shape) }
    }
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try classifier(try features(x).spatialMean().flattened())
  }
}

/// MobileNetV2's inverted residual: 1x1 expansion, 3x3 depthwise, linear 1x1 projection; a
/// residual sum when the shape is kept.
public final class InvertedResidual: Module {
  public let conv: Sequential
  public let usesResidual: Bool

  init(inputs: Int, outputs: Int, stride: Int, expansion: Int, builder b: ModelBuilder) {
    let hidden = inputs * expansion
    var layers: [Module] = []
    if expansion != 1 {
      layers.append(
        Sequential([
          b.conv(inputs, hidden, kernel: 1, bias: false), b.batchNorm(hidden), b.activation(hidden),
        ]))
    }
    layers.append(
      Sequential([
        b.conv(hidden, hidden, kernel: 3, stride: stride, padding: 1, groups: hidden, bias: false),
        b.batchNorm(hidden), b.activation(hidden),
      ]))
    layers.append(b.conv(hidden, outputs, kernel: 1, bias: false))
    layers.append(b.batchNorm(outputs))
    conv = Sequential(layers)
    usesResidual = stride == 1 && inputs == outputs
    super.init()
    register(conv, as: "conv")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    usesResidual ? try x + conv(x) : try conv(x)
  }
}
