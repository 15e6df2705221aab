import ACONNN
import ACONTensor

/// ResNet with ACON, as the reference (nmaac/acon `resnet_acon.py`): torchvision's names
/// (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), every convolution with a
/// bias, the stride on the bottleneck's first 1x1 convolution. In a bottleneck only the
/// activation after the 3x3 convolution (`acon`) is the chosen one; the stem's, the one after
/// `conv1` and the one after the residual sum stay ReLU. A basic block's two activations
/// (`acon1`, and `acon2` after the sum) are both the chosen one.
public final class ResNet: Module {
  /// The depths of the paper.
  public enum Depth: String, CaseIterable, Sendable {
    case d18 = "18"
    case d34 = "34"
    case d50 = "50"
    case d101 = "101"
    case d152 = "152"

    /// Blocks per stage.
    public var blocks: [Int] {
      switch self {
      case .d18: return [2, 2, 2, 2]
      case .d34, .d50: return [3, 4, 6, 3]
      case .d101: return [3, 4, 23, 3]
      case .d152: return [3, 8, 36, 3]
      }
    }

    /// Whether the stages use bottleneck blocks (expansion 4).
    public var usesBottleneck: Bool { self != .d18 && self != .d34 }
  }

  public let conv1: Conv2d
  public let bn1: BatchNorm2d
  public let maxPool: MaxPool2d?
  public let layers: [Sequential]
  public let fc: Linear

  init(depth: Depth, configuration: ModelConfiguration, builder b: ModelBuilder) throws {
    if configuration.smallInput {
      conv1 = b.conv(configuration.inputChannels, 64, kernel: 3, stride: 1, padding: 1)
      maxPool = nil
    } else {
      conv1 = b.conv(configuration.inputChannels, 64, kernel: 7, stride: 2, padding: 3)
      maxPool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    }
    bn1 = b.batchNorm(64)
    let expansion = depth.usesBottleneck ? 4 : 1
    var inplanes = 64
    var stages: [Sequential] = []
    for (stage, count) in depth.blocks.enumerated() {
      let planes = 64 << stage
      var blocks: [Module] = []
      for i in 0..<count {
        let stride = (i == 0 && stage > 0) ? 2 : 1
        var downsample: Sequential? = nil
        if i == 0 && (stride != 1 || inplanes != planes * expansion) {
          downsample = Sequential([
            b.conv(inplanes, planes * expansion, kernel: 1, stride: stride),
            b.batchNorm(planes * expansion),
          ])
        }
        if depth.usesBottleneck {
          blocks.append(
            Bottleneck(
              inplanes: inplanes, planes: planes, stride: stride, downsample: downsample, builder: b
            ))
        } else {
          blocks.append(
            BasicBlock(
              inplanes: inplanes, planes: planes, stride: stride, downsample: downsample, builder: b
            ))
        }
        inplanes = planes * expansion
      }
      stages.append(Sequential(blocks))
    }
    layers = stages
    fc = b.linear(512 * expansion, configuration.classes)
    super.init()
    register(conv1, as: "conv1")
    register(bn1, as: "bn1")
    if let maxPool { register(maxPool, as: "maxpool") }
    for (i, stage) in layers.enumerated() { register(stage, as: "layer\(i + 1)") }
    register(fc, as: "fc")
    b.initializeResNetStyle(self)
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    var y = try bn1.forwardThenReLU(try conv1.forward(x, before: bn1))
    if let maxPool { y = try maxPool(y) }
    for stage in layers { y = try stage(y) }
    return try fc(try y.spatialMean().flattened())
  }
}

/// The two-3x3 residual block of ResNet-18/34; both activations are the chosen one.
public final class BasicBlock: Module {
  public let conv1: Conv2d
  public let bn1: BatchNorm2d
  public let acon1: Module
  public let conv2: Conv2d
  public let bn2: BatchNorm2d
  public let acon2: Module
  public let downsample: Sequential?

  init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?, builder b: ModelBuilder) {
    conv1 = b.conv(inplanes, planes, kernel: 3, stride: stride, padding: 1)
    bn1 = b.batchNorm(planes)
    acon1 = b.activation(planes)
    conv2 = b.conv(planes, planes, kernel: 3, padding: 1)
    bn2 = b.batchNorm(planes)
    acon2 = b.activation(planes)
    self.downsample = downsample
    super.init()
    register(conv1, as: "conv1")
    register(bn1, as: "bn1")
    register(acon1, as: "acon1")
    register(conv2, as: "conv2")
    register(bn2, as: "bn2")
    register(acon2, as: "acon2")
    if let downsample { register(downsample, as: "downsample") }
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    let out = try conv2.forward(
      try bn1.forward(try conv1.forward(x, before: bn1), then: acon1), before: bn2)
    let identity = try downsample.map { try $0(x) } ?? x
    if acon2 is ReLU { return try bn2.forward(out, addingThenReLU: identity) }
    return try acon2(try bn2(out) + identity)
  }
}

/// The 1x1-3x3-1x1 bottleneck of ResNet-50/101/152, stride on the first 1x1 convolution.
public final class Bottleneck: Module {
  public let conv1: Conv2d
  public let bn1: BatchNorm2d
  public let conv2: Conv2d
  public let bn2: BatchNorm2d
  public let acon: Module
  public let conv3: Conv2d
  public let bn3: BatchNorm2d
  public let downsample: Sequential?

  init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?, builder b: ModelBuilder) {
    conv1 = b.conv(inplanes, planes, kernel: 1, stride: stride)
    bn1 = b.batchNorm(planes)
    conv2 = b.conv(planes, planes, kernel: 3, padding: 1)
    bn2 = b.batchNorm(planes)
    acon = b.activation(planes)
    conv3 = b.conv(planes, planes * 4, kernel: 1)
    bn3 = b.batchNorm(planes * 4)
    self.downsample = downsample
    super.init()
    register(conv1, as: "conv1")
    register(bn1, as: "bn1")
    register(conv2, as: "conv2")
    register(bn2, as: "bn2")
    register(acon, as: "acon")
    register(conv3, as: "conv3")
    register(bn3, as: "bn3")
    if let downsample { register(downsample, as: "downsample") }
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    var out = try bn1.forwardThenReLU(try conv1.forward(x, before: bn1))
    out = try bn2.forward(try conv2.forward(out, before: bn2), then: acon)
    let identity = try downsample.map { try $0(x) } ?? x
    return try bn3.forward(try conv3.forward(out, before: bn3), addingThenReLU: identity)
  }
}
