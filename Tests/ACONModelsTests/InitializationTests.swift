import ACONModels
import ACONNN
import ACONTensor
import Testing

/// `WeightInitialization.pytorch` gives every zoo network PyTorch's module defaults, layer type
/// by layer type, and leaves the ACON family's own parameters as the reference modules start
/// them.
@Suite("Weight initialisation")
struct InitializationTests {
  /// The activation each family is checked with: meta-ACON (its generator has convolutions and
  /// batch norms of its own), ACON-FReLU for TFNet (its funnel convolution too).
  static func activation(for model: String) -> String {
    model.hasPrefix("tfnet") ? "acon-frelu" : "meta-acon"
  }

  static func statistics(_ t: Tensor) -> (mean: Double, std: Double, maxAbs: Double) {
    let v = t.scalars.map(Double.init)
    let mean = v.reduce(0, +) / Double(v.count)
    let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
    return (mean, variance.squareRoot(), v.map { abs($0) }.max() ?? 0)
  }

  /// Checks `t` against U(-bound, bound): every value inside, and, for tensors large enough to
  /// tell, the mean and std of the uniform (std bound / sqrt 3, within 6 standard errors).
  static func expectUniform(_ t: Tensor, bound: Double, _ label: String) {
    let s = statistics(t)
    #expect(
      s.maxAbs <= bound * (1 + 1e-6), "\(label): |value| \(s.maxAbs) above the bound \(bound)")
    let n = Double(t.count)
    guard n >= 256 else { return }
    let std = bound / 3.0.squareRoot()
    // Sample std of a uniform: relative standard error sqrt(0.8 / n) / 2.
    #expect(
      abs(s.std / std - 1) <= 6 * (0.8 / n).squareRoot() / 2,
      "\(label): std \(s.std), expected \(std)")
    #expect(abs(s.mean) <= 6 * std / n.squareRoot(), "\(label): mean \(s.mean)")
    #expect(
      s.maxAbs >= bound * 0.9, "\(label): max |value| \(s.maxAbs) far inside the bound \(bound)")
  }

  @Test(arguments: ModelZoo.names)
  func pytorchDefaultsForEveryLayerType(_ name: String) throws {
    let configuration = ModelConfiguration(
      model: name, activation: Self.activation(for: name), classes: 10, inputChannels: 3)
    let model = try ModelZoo.make(configuration, seed: 3, initialization: .pytorch)
    var counts = (conv: 0, linear: 0, batchNorm: 0)
    var acon: [Float] = []
    let modules = model.namedModules()
    for (path, module) in modules {
      if let conv = module as? Conv2d {
        let fanIn = conv.inputChannels / conv.groups * conv.kernelSize * conv.kernelSize
        let bound = 1 / Double(fanIn).squareRoot()
        Self.expectUniform(conv.weight.value, bound: bound, "\(name) \(path).weight")
        if let bias = conv.bias {
          Self.expectUniform(bias.value, bound: bound, "\(name) \(path).bias")
        }
        counts.conv += 1
      } else if let fc = module as? Linear {
        let bound = 1 / Double(fc.inputFeatures).squareRoot()
        Self.expectUniform(fc.weight.value, bound: bound, "\(name) \(path).weight")
        if let bias = fc.bias {
          Self.expectUniform(bias.value, bound: bound, "\(name) \(path).bias")
        }
        counts.linear += 1
      } else if let bn = module as? BatchNorm2d {
        #expect(bn.weight.value.scalars.allSatisfy { $0 == 1 }, "\(name) \(path).weight")
        #expect(bn.bias.value.scalars.allSatisfy { $0 == 0 }, "\(name) \(path).bias")
        #expect(bn.runningMean.value.scalars.allSatisfy { $0 == 0 }, "\(name) \(path).running_mean")
        #expect(
          bn.runningVariance.value.scalars.allSatisfy { $0 == 1 }, "\(name) \(path).running_var")
        counts.batchNorm += 1
      } else if let meta = module as? MetaAconC {
        acon += meta.p1.value.scalars + meta.p2.value.scalars
      }
    }
    #expect(counts.conv > 0 && counts.linear > 0 && counts.batchNorm > 0, "\(name): \(counts)")
    if !acon.isEmpty {
      // p1, p2 ~ N(0, 1), as the reference module draws them.
      let s = Self.statistics(Tensor(shape: [acon.count], values: acon))
      let n = Double(acon.count)
      #expect(
        abs(s.mean) <= 6 / n.squareRoot() && abs(s.std - 1) <= 6 / (2 * n).squareRoot(),
        "\(name) p1, p2: \(s)")
    }
  }

  /// Only the layers the choice covers differ: the ACON family's parameters are the same
  /// values in both, and the reference's own choices (ShuffleNetV2's stem at N(0, 0.01), batch
  /// norm bias 1e-4) are gone under `.pytorch`.
  @Test(arguments: ["acon-c", "meta-acon", "meta-acon-layer", "acon-b"])
  func pytorchChangesOnlyTheLayersItCovers(_ activation: String) throws {
    let configuration = ModelConfiguration(
      model: "shufflenetv2-0.5x", activation: activation, classes: 10)
    let reference = Dictionary(
      uniqueKeysWithValues: try ModelZoo.make(configuration, seed: 5).stateDict())
    let pytorch = Dictionary(
      uniqueKeysWithValues: try ModelZoo.make(configuration, seed: 5, initialization: .pytorch)
        .stateDict())
    #expect(Set(reference.keys) == Set(pytorch.keys))
    for (key, value) in reference {
      let last = key.split(separator: ".").last.map(String.init) ?? key
      let isAcon = ["p1", "p2", "p", "beta"].contains(last)
      let isLayerGenerator = activation == "meta-acon-layer" && key.contains(".fc.")
      if isAcon || isLayerGenerator || last == "running_mean" || last == "running_var"
        || last == "num_batches_tracked"
      {
        #expect(value.scalars == pytorch[key]!.scalars, "\(key) changed")
      } else if last == "weight" && value.rank >= 2 {
        #expect(value.scalars != pytorch[key]!.scalars, "\(key) unchanged")
      }
    }
    // The reference's stem: N(0, 0.01); PyTorch's: U(-1/sqrt(27), 1/sqrt(27)).
    let stem = "first_conv.0.weight"
    #expect(Self.statistics(reference[stem]!).std < 0.02)
    #expect(
      abs(Self.statistics(pytorch[stem]!).std - 1 / 27.0.squareRoot() / 3.0.squareRoot()) < 0.02)
    let bnBias = "first_conv.1.bias"
    #expect(reference[bnBias]!.scalars.allSatisfy { $0 == 1e-4 })
    #expect(pytorch[bnBias]!.scalars.allSatisfy { $0 == 0 })
  }

  /// `generatorInitialization` splits the start: the meta-ACON generators (every module inside
  /// a `MetaAconC`) from one choice, the rest of the network from the other, each part equal to
  /// the network built wholly with its choice where that choice is the reference's.
  @Test func generatorInitializationSplitsTheStart() throws {
    let configuration = ModelConfiguration(
      model: "shufflenetv2-0.5x", activation: "meta-acon", classes: 10)
    let model = try ModelZoo.make(configuration, seed: 5)
    let generatorPrefixes = model.namedModules().filter { $0.1 is MetaAconC }.map { $0.0 + "." }
    #expect(!generatorPrefixes.isEmpty)
    func insideGenerator(_ key: String) -> Bool { generatorPrefixes.contains { key.hasPrefix($0) } }
    let reference = Dictionary(uniqueKeysWithValues: model.stateDict())
    let pytorchGenerators = Dictionary(
      uniqueKeysWithValues: try ModelZoo.make(
        configuration, seed: 5, initialization: .reference, generatorInitialization: .pytorch
      ).stateDict())
    let referenceGenerators = Dictionary(
      uniqueKeysWithValues: try ModelZoo.make(
        configuration, seed: 5, initialization: .pytorch, generatorInitialization: .reference
      ).stateDict())
    var counts = (generator: 0, rest: 0)
    for (key, value) in reference {
      let last = key.split(separator: ".").last.map(String.init) ?? key
      let redrawn = (last == "weight" && value.rank >= 2) || last == "bias"
      if insideGenerator(key) {
        // The generators: redrawn (or reset) under .pytorch, untouched under .reference.
        #expect(referenceGenerators[key]!.scalars == value.scalars, "\(key) changed")
        if redrawn { #expect(pytorchGenerators[key]!.scalars != value.scalars, "\(key) unchanged") }
        counts.generator += 1
      } else {
        #expect(pytorchGenerators[key]!.scalars == value.scalars, "\(key) changed")
        if redrawn && !["p1", "p2", "beta"].contains(last) {
          #expect(referenceGenerators[key]!.scalars != value.scalars, "\(key) unchanged")
        }
        counts.rest += 1
      }
    }
    #expect(counts.generator > 0 && counts.rest > 0, "\(counts)")
    // The same choice for both parts is the plain one.
    let same = try ModelZoo.make(
      configuration, seed: 5, initialization: .pytorch, generatorInitialization: .pytorch)
    let pytorch = try ModelZoo.make(configuration, seed: 5, initialization: .pytorch)
    for ((key, x), (_, y)) in zip(same.stateDict(), pytorch.stateDict()) {
      #expect(x.scalars == y.scalars, "\(key)")
    }
  }

  @Test func theDefaultIsTheReference() throws {
    let configuration = ModelConfiguration(
      model: "shufflenetv2-0.25x", activation: "acon-c", classes: 10)
    let a = try ModelZoo.make(configuration, seed: 2).stateDict()
    let b = try ModelZoo.make(configuration, seed: 2, initialization: .reference).stateDict()
    #expect(a.map(\.0) == b.map(\.0))
    for ((key, x), (_, y)) in zip(a, b) { #expect(x.scalars == y.scalars, "\(key)") }
    #expect(WeightInitialization(rawValue: "pytorch") == .pytorch)
    #expect(WeightInitialization(rawValue: "kaiming") == nil)
  }
}
