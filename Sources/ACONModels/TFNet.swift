import ACONNN
import ACONTensor

/// TFNet, the paper's network built around ACON-FReLU, structured as the reference
/// (nmaac/acon `TFNet/network.py`): `first_conv` (3x3 stride-2 conv, BN, ReLU), `features.N`
/// TFBlocks (`branch_main`: 1x1 conv, BN, ACON-FReLU, 1x1 conv, BN; then `acon`), `conv_last`,
/// `classifier.0`. With the `relu` baseline each ACON-FReLU is a ReLU, and the stride-2 ones a
/// 3x3 stride-2 max-pool followed by ReLU (the pooling keeps the downsampling of the original).
public final class TFNet: Module {
  /// The width multipliers of the paper.
  public static let widths = ["0.5", "1.0", "1.5", "2.0"]
  /// Blocks per stage.
  public static let stages = [2, 3, 8, 3]

  public let firstConv: Sequential
  public let features: Sequential
  public let convLast: Sequential
  public let dropout: Dropout?
  public let classifier: Sequential

  init(width: Double, configuration: ModelConfiguration, builder b: ModelBuilder) throws {
    guard b.activationKind == .aconFReLU || b.activationKind == .relu else {
      throw ModelError(
        "TFNet is built around ACON-FReLU: use --activation acon-frelu (or relu for its baseline), not \(b.activationKind.rawValue)"
      )
    }
    var channels = Int(16 * width)
    firstConv = Sequential([
      b.conv(
        configuration.inputChannels, channels, kernel: 3,
        stride: configuration.smallInput ? 1 : 2, padding: 1),
      b.batchNorm(channels), ReLU(),
    ])
    var blocks: [Module] = []
    for count in Self.stages {
      for i in 0..<count {
        let stride = i == 0 ? 2 : 1
        blocks.append(TFBlock(inputs: channels, stride: stride, builder: b))
        if i == 0 { channels *= 2 }
      }
    }
    features = Sequential(blocks)
    convLast = Sequential([
      b.conv(channels, 1024, kernel: 1), b.batchNorm(1024),
      TFBlock.frelu(1024, stride: 1, builder: b),
    ])
    dropout = width > 0.5 ? Dropout(probability: 0.2, seed: b.rng.next()) : nil
    classifier = Sequential([b.linear(1024, configuration.classes)])
    super.init()
    register(firstConv, as: "first_conv")
    register(features, as: "features")
    register(convLast, as: "conv_last")
    if let dropout { register(dropout, as: "dropout") }
    register(classifier, as: "classifier")
    b.initializeShuffleStyle(self, smallConvNames: ["first", "frelu"])
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    var y = try convLast(try features(try firstConv(x))).spatialMean()
    if let dropout { y = try dropout(y) }
    return try classifier(try y.flattened())
  }
}

/// TFNet's block: stride 1 adds the input to the branch, stride 2 concatenates them (doubling
/// the channels); ACON-FReLU (`acon`) follows either.
public final class TFBlock: Module {
  public let stride: Int
  public let branchMain: Sequential
  public let acon: Module

  static func frelu(_ channels: Int, stride: Int, builder b: ModelBuilder) -> Module {
    if b.activationKind == .relu {
      return stride == 1
        ? ReLU() : Sequential([MaxPool2d(kernelSize: 3, stride: 2, padding: 1), ReLU()])
    }
    return AconFReLU(channels: channels, stride: stride, using: &b.rng)
  }

  init(inputs: Int, stride: Int, builder b: ModelBuilder) {
    self.stride = stride
    branchMain = Sequential([
      b.conv(inputs, inputs, kernel: 1), b.batchNorm(inputs),
      Self.frelu(inputs, stride: 1, builder: b),
      b.conv(inputs, inputs, kernel: 1), b.batchNorm(inputs),
    ])
    acon = Self.frelu(inputs * stride, stride: stride, builder: b)
    super.init()
    register(branchMain, as: "branch_main")
    register(acon, as: "acon")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    let branch = try branchMain(x)
    if stride == 1 { return try acon(try x + branch) }
    return try acon(try Tensor.concatChannels([x, branch]))
  }
}
