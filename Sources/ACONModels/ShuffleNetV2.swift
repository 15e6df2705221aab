import ACONNN
import ACONTensor

/// ShuffleNetV2 with ACON activations, structured as the reference (nmaac/acon,
/// `ShuffleNetV2_ACON` / `ShuffleNetV2_MetaACON`) down to parameter names:
/// `first_conv`, `maxpool`, `features.N.branch_main`, `features.N.branch_proj`, `conv_last`,
/// `classifier.0`. Every ReLU of the original network is the chosen activation.
public final class ShuffleNetV2: Module {
  /// The width multipliers of the paper, and a narrower 0.25x of ours.
  ///
  /// 0.25x is not in the reference: it halves 0.5x's stem and stages (16, 32, 64, 128) and keeps
  /// the 1024-channel last convolution, so each stride-2 block still splits its output evenly
  /// between the two branches. It exists for the gain-against-model-size study (docs/RESULTS.md).
  // The case names spell the reference's multipliers ("0.5x"), which lowerCamelCase cannot.
  // swift-format-ignore: AlwaysUseLowerCamelCase
  public enum Width: String, CaseIterable, Sendable {
    case x0_25 = "0.25x"
    case x0_5 = "0.5x"
    case x1_0 = "1.0x"
    case x1_5 = "1.5x"
    case x2_0 = "2.0x"

    /// Output channels of the stem, the three stages and the last convolution.
    public var stageChannels: [Int] {
      switch self {
      case .x0_25: return [16, 32, 64, 128, 1024]
      case .x0_5: return [24, 48, 96, 192, 1024]
      case .x1_0: return [24, 116, 232, 464, 1024]
      case .x1_5: return [24, 176, 352, 704, 1024]
      case .x2_0: return [24, 244, 488, 976, 2048]
      }
    }
  }

  /// Blocks per stage.
  public static let stageRepeats = [4, 8, 4]

  public let firstConv: Sequential
  public let maxPool: MaxPool2d?
  public let features: Sequential
  public let convLast: Sequential
  public let dropout: Dropout?
  public let classifier: Sequential
  let lastChannels: Int

  init(width: Width, configuration: ModelConfiguration, builder b: ModelBuilder) throws {
    let channels = width.stageChannels
    // meta-ACON's generator reduction: r = 8 for the narrowest net, 16 otherwise (reference);
    // 0.25x is narrower still, so it keeps 8.
    let r = width == .x0_5 || width == .x0_25 ? 8 : 16
    var input = channels[0]
    let stemStride = configuration.smallInput ? 1 : 2
    firstConv = Sequential([
      b.conv(configuration.inputChannels, input, kernel: 3, stride: stemStride, padding: 1),
      b.batchNorm(input), b.activation(input, reduction: r),
    ])
    maxPool = configuration.smallInput ? nil : MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    var blocks: [Module] = []
    for (stage, repeats) in Self.stageRepeats.enumerated() {
      let output = channels[stage + 1]
      for i in 0..<repeats {
        if i == 0 {
          blocks.append(
            ShuffleV2Block(
              inputs: input, outputs: output, mid: output / 2, stride: 2, reduction: r, builder: b))
        } else {
          blocks.append(
            ShuffleV2Block(
              inputs: input / 2, outputs: output, mid: output / 2, stride: 1, reduction: r,
              builder: b))
        }
        input = output
      }
    }
    features = Sequential(blocks)
    lastChannels = channels[4]
    convLast = Sequential([
      b.conv(input, lastChannels, kernel: 1), b.batchNorm(lastChannels),
      b.activation(lastChannels, reduction: r),
    ])
    dropout = width == .x2_0 ? Dropout(probability: 0.2, seed: b.rng.next()) : nil
    classifier = Sequential([b.linear(lastChannels, configuration.classes)])
    super.init()
    register(firstConv, as: "first_conv")
    if let maxPool { register(maxPool, as: "maxpool") }
    register(features, as: "features")
    register(convLast, as: "conv_last")
    if let dropout { register(dropout, as: "dropout") }
    register(classifier, as: "classifier")
    b.initializeShuffleStyle(self, smallConvNames: ["first"])
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    var y = try maxPool.map { try firstConv.forward(x, thenMaxPool: $0) } ?? firstConv(x)
    y = try convLast(try features(y))
    // Global average pooling: the reference's AvgPool2d(7) at 224, any input size here.
    y = try y.spatialMean()
    if let dropout { y = try dropout(y) }
    return try classifier(try y.flattened())
  }
}

/// One ShuffleNetV2 unit. Stride 1: the input's even channels pass through, its odd channels go
/// through `branch_main`; stride 2: both branches see the whole input.
public final class ShuffleV2Block: Module {
  public let stride: Int
  public let branchMain: Sequential
  public let branchProj: Sequential?

  init(inputs: Int, outputs: Int, mid: Int, stride: Int, reduction r: Int, builder b: ModelBuilder)
  {
    self.stride = stride
    let produced = outputs - inputs
    branchMain = Sequential([
      b.conv(inputs, mid, kernel: 1), b.batchNorm(mid), b.activation(mid, reduction: r),
      b.conv(mid, mid, kernel: 3, stride: stride, padding: 1, groups: mid), b.batchNorm(mid),
      b.conv(mid, produced, kernel: 1), b.batchNorm(produced), b.activation(produced, reduction: r),
    ])
    if stride == 2 {
      branchProj = Sequential([
        b.conv(inputs, inputs, kernel: 3, stride: 2, padding: 1, groups: inputs),
        b.batchNorm(inputs),
        b.conv(inputs, inputs, kernel: 1), b.batchNorm(inputs), b.activation(inputs, reduction: r),
      ])
    } else {
      branchProj = nil
    }
    super.init()
    register(branchMain, as: "branch_main")
    if let branchProj { register(branchProj, as: "branch_proj") }
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    if let branchProj {
      return try Tensor.concatChannels([try branchProj(x), try branchMain(x)])
    }
    guard x.rank == 4, x.shape[1] % 4 == 0 else {
      throw TensorError.shapeMismatch(
        operation: "ShuffleV2Block", shapes: [x.shape],
        detail: "a stride-1 block needs [N, C, H, W] with C divisible by 4")
    }
    let (identity, main) = try x.splitChannelsByParity()
    return try Tensor.concatChannels([identity, try branchMain(main)])
  }
}
