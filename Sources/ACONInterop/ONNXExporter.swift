import ACONModels
import ACONNN
import ACONTensor

/// Exports the evaluation graph of a model-zoo network to ONNX.
///
/// The graph is what `forward` computes in eval mode, written with core operators only:
/// - a batch norm after a convolution is folded into the convolution's weight and bias; one
///   with no convolution before it (ACON-FReLU's output norm) becomes a per-channel Mul + Add;
/// - ACON-C, ACON-A/B and Swish as Mul, Sigmoid and Add with `[1, C, 1, 1]` initializers
///   (p1 - p2 and beta (p1 - p2) folded), the hard-sigmoid variants with `HardSigmoid`;
/// - meta-ACON's channel-wise generator as GlobalAveragePool + two 1x1 Conv (its batch norms
///   folded) + Sigmoid; layer-wise as ReduceMean + 1x1 Conv + Sigmoid; pixel-wise as Mul + Add +
///   Sigmoid;
/// - ShuffleNetV2's parity split as two Gather on the channel axis, Concat, MaxPool,
///   GlobalAveragePool, Flatten and Gemm for the classifier; dropout disappears.
public enum ONNXExporter {
  /// The input layout and the operator set of an export.
  public struct Options: Sendable {
    /// Height and width of the input images.
    public var inputSize: Int
    /// The batch size written into the input's shape; ignored with `dynamicBatch`.
    public var batchSize: Int
    /// A symbolic batch dimension (`batch`) instead of a fixed one.
    public var dynamicBatch: Bool
    /// The default-domain operator set version.
    public var opset: Int

    public init(
      inputSize: Int, batchSize: Int = 1, dynamicBatch: Bool = false,
      opset: Int = ONNXModel.defaultOpset
    ) {
      self.inputSize = inputSize
      self.batchSize = batchSize
      self.dynamicBatch = dynamicBatch
      self.opset = opset
    }
  }

  /// The ONNX model of `model` (built from `configuration`), in eval mode. The model's mode is
  /// not changed.
  public static func export(
    _ model: Module, configuration: ModelConfiguration, options: Options
  ) throws -> ONNXModel {
    guard ONNXModel.supportedOpsets.contains(options.opset) else {
      throw InteropError(
        "--opset \(options.opset)",
        "export writes opsets \(ONNXModel.supportedOpsets.lowerBound) to \(ONNXModel.supportedOpsets.upperBound) (default \(ONNXModel.defaultOpset))"
      )
    }
    guard options.inputSize >= 1, options.batchSize >= 1 else {
      throw InteropError("export", "the input size and batch size must be positive")
    }
    let builder = GraphBuilder(
      name: configuration.model, opset: options.opset, subject: configuration.model)
    let logits = try builder.emit(model, "input", path: "")
    builder.graph.nodes.append(
      ONNXNode(opType: "Identity", name: "output", inputs: [logits], outputs: ["logits"]))
    let batch: Int? = options.dynamicBatch ? nil : options.batchSize
    builder.graph.inputs = [
      ONNXValueInfo(
        name: "input",
        shape: [batch, configuration.inputChannels, options.inputSize, options.inputSize])
    ]
    builder.graph.outputs = [ONNXValueInfo(name: "logits", shape: [batch, configuration.classes])]
    var onnx = ONNXModel(opset: options.opset, graph: builder.graph)
    onnx.metadata = configuration.metadata.filter { $0.key.hasPrefix("acon.") }.sorted {
      $0.key < $1.key
    }
    .map { ($0.key, $0.value) }
    return onnx
  }

  /// How many nodes of each operator type `model`'s graph has.
  public static func operatorCounts(_ model: ONNXModel) -> [String: Int] {
    model.graph.nodes.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 }
  }
}

/// Builds a graph node by node; each `emit` returns the name of the value it produced.
final class GraphBuilder {
  var graph: ONNXGraph
  let opset: Int
  let subject: String
  private var counter = 0

  init(name: String, opset: Int, subject: String) {
    graph = ONNXGraph(name: name)
    self.opset = opset
    self.subject = subject
  }

  private func fresh(_ hint: String) -> String {
    counter += 1
    return "\(hint)_\(counter)"
  }

  /// Adds a node with one output and returns the output's name.
  @discardableResult
  func node(_ op: String, _ inputs: [String], _ attributes: [ONNXAttribute] = []) -> String {
    let output = fresh(op)
    graph.nodes.append(
      ONNXNode(
        opType: op, name: "\(op)_node_\(counter)", inputs: inputs, outputs: [output],
        attributes: attributes))
    return output
  }

  /// Adds a float initializer and returns its name.
  func constant(_ name: String, _ shape: [Int], _ values: [Float]) -> String {
    var unique = name
    if graph.initializers.contains(where: { $0.name == unique }) { unique = fresh(name) }
    graph.initializers.append(ONNXTensor(name: unique, shape: shape, values: .float(values)))
    return unique
  }

  /// A per-channel `[1, C, 1, 1]` initializer.
  func channels(_ name: String, _ values: [Float]) -> String {
    constant(name, [1, values.count, 1, 1], values)
  }

  private func unsupported(_ module: Module, _ path: String) -> InteropError {
    InteropError(subject, "cannot export \(String(describing: type(of: module))) at '\(path)'")
  }

  private func join(_ path: String, _ name: String) -> String {
    path.isEmpty ? name : path + "." + name
  }

  // MARK: Modules

  func emit(_ module: Module, _ x: String, path: String) throws -> String {
    switch module {
    case let m as Sequential: return try sequential(m.layers, x, path: path)
    case let m as Conv2d: return convolution(m, folding: nil, x, path: path)
    case let m as BatchNorm2d: return standaloneBatchNorm(m, x, path: path)
    case let m as Linear: return linear(m, x, path: path)
    case let m as MaxPool2d:
      return node(
        "MaxPool", [x],
        [
          .init("kernel_shape", .ints([m.kernelSize, m.kernelSize])),
          .init("strides", .ints([m.stride, m.stride])),
          .init("pads", .ints([m.padding, m.padding, m.padding, m.padding])),
        ])
    case is Dropout, is Identity: return x
    case is Flatten: return node("Flatten", [x], [.init("axis", .int(1))])
    case is ReLU: return node("Relu", [x])
    case is Swish: return node("Mul", [x, node("Sigmoid", [x])])
    case let m as AconA:
      let beta = m.beta.value.scalars
      return acon(
        x, difference: [Float](repeating: 1, count: beta.count), p2: nil, scaledBeta: beta,
        gate: .sigmoid, path: path)
    case let m as AconB:
      let d = m.p.value.scalars.map { 1 - $0 }
      return acon(
        x, difference: d, p2: m.p.value.scalars,
        scaledBeta: zip(m.beta.value.scalars, d).map { $0 * $1 }, gate: .sigmoid, path: path)
    case let m as AconC:
      let d = zip(m.p1.value.scalars, m.p2.value.scalars).map { $0 - $1 }
      return acon(
        x, difference: d, p2: m.p2.value.scalars,
        scaledBeta: zip(m.beta.value.scalars, d).map { $0 * $1 }, gate: m.gate, path: path)
    case let m as MetaAconC: return try metaAcon(m, x, path: path)
    case let m as AconFReLU: return aconFReLU(m, x, path: path)
    case let m as ShuffleNetV2:
      var y = try emit(m.firstConv, x, path: join(path, "first_conv"))
      if let pool = m.maxPool { y = try emit(pool, y, path: join(path, "maxpool")) }
      y = try emit(m.features, y, path: join(path, "features"))
      y = try emit(m.convLast, y, path: join(path, "conv_last"))
      return try classifierHead(y, m.classifier, path: join(path, "classifier"))
    case let m as ShuffleV2Block: return try shuffleBlock(m, x, path: path)
    case let m as ResNet:
      var y = node("Relu", [convolution(m.conv1, folding: m.bn1, x, path: join(path, "conv1"))])
      if let pool = m.maxPool { y = try emit(pool, y, path: join(path, "maxpool")) }
      for (i, stage) in m.layers.enumerated() {
        y = try emit(stage, y, path: join(path, "layer\(i + 1)"))
      }
      return try classifierHead(y, m.fc, path: join(path, "fc"))
    case let m as BasicBlock:
      var y = try emit(
        m.acon1, convolution(m.conv1, folding: m.bn1, x, path: join(path, "conv1")),
        path: join(path, "acon1"))
      y = convolution(m.conv2, folding: m.bn2, y, path: join(path, "conv2"))
      let identity = try m.downsample.map { try emit($0, x, path: join(path, "downsample")) } ?? x
      return try emit(m.acon2, node("Add", [y, identity]), path: join(path, "acon2"))
    case let m as Bottleneck:
      var y = node("Relu", [convolution(m.conv1, folding: m.bn1, x, path: join(path, "conv1"))])
      y = try emit(
        m.acon, convolution(m.conv2, folding: m.bn2, y, path: join(path, "conv2")),
        path: join(path, "acon"))
      y = convolution(m.conv3, folding: m.bn3, y, path: join(path, "conv3"))
      let identity = try m.downsample.map { try emit($0, x, path: join(path, "downsample")) } ?? x
      return node("Relu", [node("Add", [y, identity])])
    case let m as MobileNetV1:
      return try classifierHead(
        try emit(m.features, x, path: join(path, "features")), m.classifier,
        path: join(path, "classifier"))
    case let m as MobileNetV2:
      return try classifierHead(
        try emit(m.features, x, path: join(path, "features")), m.classifier,
        path: join(path, "classifier"))
    case let m as InvertedResidual:
      let y = try emit(m.conv, x, path: join(path, "conv"))
      return m.usesResidual ? node("Add", [x, y]) : y
    case let m as TFNet:
      var y = try emit(m.firstConv, x, path: join(path, "first_conv"))
      y = try emit(m.features, y, path: join(path, "features"))
      y = try emit(m.convLast, y, path: join(path, "conv_last"))
      return try classifierHead(y, m.classifier, path: join(path, "classifier"))
    case let m as TFBlock:
      let branch = try emit(m.branchMain, x, path: join(path, "branch_main"))
      let merged =
        m.stride == 1
        ? node("Add", [x, branch]) : node("Concat", [x, branch], [.init("axis", .int(1))])
      return try emit(m.acon, merged, path: join(path, "acon"))
    default:
      throw unsupported(module, path)
    }
  }

  /// Layers in order, a convolution and the batch norm after it as one convolution.
  func sequential(_ layers: [Module], _ x: String, path: String) throws -> String {
    var y = x
    var i = 0
    while i < layers.count {
      if let conv = layers[i] as? Conv2d, i + 1 < layers.count,
        let bn = layers[i + 1] as? BatchNorm2d
      {
        y = convolution(conv, folding: bn, y, path: join(path, String(i)))
        i += 2
      } else {
        y = try emit(layers[i], y, path: join(path, String(i)))
        i += 1
      }
    }
    return y
  }

  /// Global average pooling, flatten, then the classifier (dropout is the identity in eval).
  func classifierHead(_ x: String, _ classifier: Module, path: String) throws -> String {
    let pooled = node("Flatten", [node("GlobalAveragePool", [x])], [.init("axis", .int(1))])
    return try emit(classifier, pooled, path: path)
  }

  // MARK: Layers

  /// The per-channel `scale` and `shift` of an eval-mode batch norm, in Double.
  func batchNormAffine(_ bn: BatchNorm2d) -> (scale: [Double], shift: [Double]) {
    let gamma = bn.weight.value.scalars
    let beta = bn.bias.value.scalars
    let mean = bn.runningMean.value.scalars
    let variance = bn.runningVariance.value.scalars
    var scale: [Double] = []
    var shift: [Double] = []
    for c in 0..<bn.channels {
      let s = Double(gamma[c]) / (Double(variance[c]) + Double(bn.epsilon)).squareRoot()
      scale.append(s)
      shift.append(Double(beta[c]) - Double(mean[c]) * s)
    }
    return (scale, shift)
  }

  /// A Conv node; with `folding`, the batch norm after it is folded into its weight and bias:
  /// `W' = W s`, `b' = b s + t` per output channel, with the norm's scale `s` and shift `t`.
  func convolution(_ conv: Conv2d, folding bn: BatchNorm2d?, _ x: String, path: String) -> String {
    var weight = conv.weight.value.scalars
    var bias = conv.bias?.value.scalars ?? [Float](repeating: 0, count: conv.outputChannels)
    if let bn {
      let (scale, shift) = batchNormAffine(bn)
      let perChannel = weight.count / conv.outputChannels
      for c in 0..<conv.outputChannels {
        for j in 0..<perChannel {
          weight[c * perChannel + j] = Float(Double(weight[c * perChannel + j]) * scale[c])
        }
        bias[c] = Float(Double(bias[c]) * scale[c] + shift[c])
      }
    }
    let k = conv.kernelSize
    let w = constant(
      path + (bn == nil ? ".weight" : ".weight_bn_folded"), conv.weight.value.shape, weight)
    var inputs = [x, w]
    if conv.bias != nil || bn != nil {
      inputs.append(
        constant(path + (bn == nil ? ".bias" : ".bias_bn_folded"), [conv.outputChannels], bias))
    }
    let p = conv.padding
    return node(
      "Conv", inputs,
      [
        .init("kernel_shape", .ints([k, k])), .init("strides", .ints([conv.stride, conv.stride])),
        .init("pads", .ints([p, p, p, p])),
        .init("dilations", .ints([conv.dilation, conv.dilation])),
        .init("group", .int(conv.groups)),
      ])
  }

  /// A batch norm with no convolution before it: `x s + t` per channel.
  func standaloneBatchNorm(_ bn: BatchNorm2d, _ x: String, path: String) -> String {
    let (scale, shift) = batchNormAffine(bn)
    let s = channels(path + ".scale", scale.map { Float($0) })
    let t = channels(path + ".shift", shift.map { Float($0) })
    return node("Add", [node("Mul", [x, s]), t])
  }

  func linear(_ fc: Linear, _ x: String, path: String) -> String {
    var inputs = [x, constant(path + ".weight", fc.weight.value.shape, fc.weight.value.scalars)]
    if let bias = fc.bias {
      inputs.append(constant(path + ".bias", bias.value.shape, bias.value.scalars))
    }
    return node("Gemm", inputs, [.init("transB", .int(1))])
  }

  func gate(_ u: String, _ gate: ACONGate) -> String {
    switch gate {
    case .sigmoid: return node("Sigmoid", [u])
    case .hardSigmoid:
      return node("HardSigmoid", [u], [.init("alpha", .float(1 / 6)), .init("beta", .float(0.5))])
    }
  }

  /// ACON-C with a fixed beta, `d x gate(beta d x) + p2 x` with `d = p1 - p2`, written as
  /// `x (d gate(beta d x) + p2)`: one Mul by the folded `beta d`, the gate, then `d s + p2`
  /// and one Mul by `x` (five ops; ACON-A and Swish-like layers, `d = 1` and `p2 = 0`, three).
  func acon(
    _ x: String, difference d: [Float], p2: [Float]?, scaledBeta: [Float],
    gate kind: ACONGate, path: String
  ) -> String {
    let switched = gate(
      node("Mul", [x, channels(path + ".beta_times_p1_minus_p2", scaledBeta)]), kind)
    return node("Mul", [x, switchCoefficient(switched, difference: d, p2: p2, path: path)])
  }

  /// `d s + p2` per channel (terms that are 1 or 0 left out).
  func switchCoefficient(_ s: String, difference d: [Float], p2: [Float]?, path: String) -> String {
    let scaled =
      d.allSatisfy { $0 == 1 } ? s : node("Mul", [s, channels(path + ".p1_minus_p2", d)])
    guard let p2, p2.contains(where: { $0 != 0 }) else { return scaled }
    return node("Add", [scaled, channels(path + ".p2", p2)])
  }

  /// meta-ACON: beta from the generator (`[N, C, 1, 1]`, `[N, 1, 1, 1]` or x's shape), then
  /// `x (d gate(beta d x) + p2)`, with `beta d` formed on the small generated tensor where it
  /// is one.
  func metaAcon(_ m: MetaAconC, _ x: String, path: String) throws -> String {
    let beta: String
    switch m.generator {
    case .channel, .channelWithoutBatchNorm:
      let pooled = node("GlobalAveragePool", [x])
      let hidden = convolution(m.fc1!, folding: m.bn1, pooled, path: path + ".fc1")
      beta = node("Sigmoid", [convolution(m.fc2!, folding: m.bn2, hidden, path: path + ".fc2")])
    case .layer:
      let mean: String
      if opset >= 18 {
        let axes = "\(path).axes"
        graph.initializers.append(ONNXTensor(name: axes, shape: [3], values: .int64([1, 2, 3])))
        mean = node("ReduceMean", [x, axes], [.init("keepdims", .int(1))])
      } else {
        mean = node(
          "ReduceMean", [x], [.init("axes", .ints([1, 2, 3])), .init("keepdims", .int(1))])
      }
      beta = node("Sigmoid", [convolution(m.fc1!, folding: nil, mean, path: path + ".fc")])
    case .pixel:
      let affine = m.affine!
      let scaled = node("Mul", [x, channels(path + ".fc.weight", affine.weight.value.scalars)])
      beta = node(
        "Sigmoid", [node("Add", [scaled, channels(path + ".fc.bias", affine.bias.value.scalars)])])
    }
    let p1 = m.p1.value.scalars
    let p2 = m.p2.value.scalars
    let d = zip(p1, p2).map { $0 - $1 }
    let dName = channels(path + ".p1_minus_p2", d)
    let scaledBeta = node("Mul", [beta, dName])
    let switched = gate(node("Mul", [x, scaledBeta]), m.gate)
    let coefficient = node("Add", [node("Mul", [switched, dName]), channels(path + ".p2", p2)])
    return node("Mul", [x, coefficient])
  }

  /// `bn2((a - b) sigmoid(a - b) + b)` with `a = x` or its 3x3/2 max-pool and
  /// `b = bn1(dwconv(x))`.
  func aconFReLU(_ m: AconFReLU, _ x: String, path: String) -> String {
    let a =
      m.stride == 2
      ? node(
        "MaxPool", [x],
        [
          .init("kernel_shape", .ints([3, 3])), .init("strides", .ints([2, 2])),
          .init("pads", .ints([1, 1, 1, 1])),
        ]) : x
    let b = convolution(m.convFReLU, folding: m.bn1, x, path: path + ".conv_frelu")
    let difference = node("Sub", [a, b])
    let smooth = node("Add", [node("Mul", [difference, node("Sigmoid", [difference])]), b])
    return standaloneBatchNorm(m.bn2, smooth, path: path + ".bn2")
  }

  /// Stride 2: both branches see the input; stride 1: the even channels pass, the odd ones go
  /// through the main branch (two Gather on the channel axis).
  func shuffleBlock(_ m: ShuffleV2Block, _ x: String, path: String) throws -> String {
    let concat: [ONNXAttribute] = [.init("axis", .int(1))]
    if let proj = m.branchProj {
      let a = try emit(proj, x, path: path + ".branch_proj")
      let b = try emit(m.branchMain, x, path: path + ".branch_main")
      return node("Concat", [a, b], concat)
    }
    guard let first = m.branchMain.layers.first as? Conv2d else { throw unsupported(m, path) }
    let half = first.inputChannels
    let even = "\(path).even_channels"
    let odd = "\(path).odd_channels"
    graph.initializers.append(
      ONNXTensor(name: even, shape: [half], values: .int64((0..<half).map { 2 * $0 })))
    graph.initializers.append(
      ONNXTensor(name: odd, shape: [half], values: .int64((0..<half).map { 2 * $0 + 1 })))
    let identity = node("Gather", [x, even], [.init("axis", .int(1))])
    let main = try emit(
      m.branchMain, node("Gather", [x, odd], [.init("axis", .int(1))]), path: path + ".branch_main")
    return node("Concat", [identity, main], concat)
  }
}
