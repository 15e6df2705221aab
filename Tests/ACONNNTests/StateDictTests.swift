import ACONNN
import ACONTensor
import Foundation
import Testing

/// Stand-ins with PyTorch's parameter and buffer names; the real layers live on other branches.
private final class ConvLike: Module {
  init(_ shape: [Int], seed: UInt64) {
    super.init()
    var rng = RandomGenerator(seed: seed)
    register(
      parameter: Parameter(Tensor.randomNormal(shape, using: &rng), decays: true), as: "weight")
  }
}

private final class BNLike: Module {
  init(_ c: Int) {
    super.init()
    register(parameter: Parameter(Tensor.ones([c])), as: "weight")
    register(parameter: Parameter(Tensor.zeros([c])), as: "bias")
    register(buffer: Buffer(Tensor.zeros([c])), as: "running_mean")
    register(buffer: Buffer(Tensor.ones([c])), as: "running_var")
    register(buffer: Buffer(Tensor(scalar: 0), storedAsInteger: true), as: "num_batches_tracked")
  }
}

private final class LinearLike: Module {
  init(_ o: Int, _ i: Int, seed: UInt64) {
    super.init()
    var rng = RandomGenerator(seed: seed)
    register(parameter: Parameter(Tensor.randomNormal([o, i], using: &rng)), as: "weight")
    register(parameter: Parameter(Tensor.randomNormal([o], using: &rng)), as: "bias")
  }
}

private final class Stateless: Module {}

/// The tree of scripts/golden/state_dict_sample.py.
private final class Tiny: Module {
  init(seed: UInt64 = 1, classes: Int = 2) {
    super.init()
    register(
      Sequential([ConvLike([4, 3, 3, 3], seed: seed), BNLike(4), Stateless()]), as: "features")
    register(Sequential([LinearLike(classes, 4, seed: seed + 1)]), as: "classifier")
  }
}

private let tinyNames = [
  "features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
  "features.1.running_var", "features.1.num_batches_tracked", "classifier.0.weight",
  "classifier.0.bias",
]

@Suite("State dict")
struct StateDictTests {
  func temporaryFile() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-sd-\(UUID().uuidString).safetensors")
  }

  /// The error text of `body`, which must throw a TensorError.
  func errorText(_ body: () throws -> Void) -> String {
    do {
      try body()
    } catch let e as TensorError {
      return e.description
    } catch {
      return "unexpected \(error)"
    }
    Issue.record("no error thrown")
    return ""
  }

  @Test func keysFollowPyTorchOrder() {
    #expect(Tiny().stateDict().map(\.0) == tinyNames)
  }

  @Test func stateDictIsASnapshot() throws {
    let m = Tiny()
    let sd = m.stateDict()
    let p = m.parameters[0]
    let before = p.value.scalars
    p.update { ptr, n in for i in 0..<n { ptr[i] += 1 } }
    #expect(sd[0].1.scalars == before)
  }

  @Test func fileRoundTripRestoresEverything() throws {
    let a = Tiny(seed: 1)
    let bn = a.namedBuffers()
    bn[0].1.value = Tensor(shape: [4], values: [0.1, 0.2, 0.3, 0.4])
    bn[2].1.value = Tensor(scalar: 17)
    let url = temporaryFile()
    defer { try? FileManager.default.removeItem(at: url) }
    try a.save(to: url, metadata: ["epoch": "5"])

    let file = try SafeTensors.read(url)
    #expect(file.names == tinyNames)
    #expect(file.dtypes["features.1.num_batches_tracked"] == .i64)
    #expect(file.tensors["features.1.num_batches_tracked"]!.shape == [])

    let b = Tiny(seed: 99)
    let metadata = try b.load(from: url, strict: true)
    #expect(metadata == ["epoch": "5"])
    for ((na, ta), (nb, tb)) in zip(a.stateDict(), b.stateDict()) {
      #expect(na == nb)
      #expect(ta.scalars == tb.scalars, "\(na)")
    }
    // Loaded parameters still record gradients.
    #expect(b.parameters.allSatisfy { $0.value.requiresGrad })
  }

  @Test func loadsAStateDictWrittenByPyTorch() throws {
    let url = try #require(
      Bundle.module.url(
        forResource: "state_dict_sample", withExtension: "safetensors", subdirectory: "Golden"))
    let m = Tiny(seed: 5)
    let metadata = try m.load(from: url, strict: true)
    #expect(metadata["arch"] == "tiny")
    let file = try SafeTensors.read(url)
    for (name, t) in m.stateDict() {
      #expect(t.scalars == file.tensors[name]!.scalars, "\(name)")
    }
    let sd = Dictionary(uniqueKeysWithValues: m.stateDict())
    #expect(sd["features.1.num_batches_tracked"]!.item == 3)
    #expect(sd["features.1.running_var"]!.scalars != [1, 1, 1, 1])
  }

  @Test func acceptsDataParallelPrefix() throws {
    let a = Tiny(seed: 1)
    var prefixed: [String: Tensor] = [:]
    for (k, v) in a.stateDict() { prefixed["module." + k] = v }
    let b = Tiny(seed: 2)
    try b.loadStateDict(prefixed)
    #expect(b.stateDict()[0].1.scalars == a.stateDict()[0].1.scalars)
  }

  @Test func strictListsMissingAndUnexpectedKeys() throws {
    var sd = Dictionary(uniqueKeysWithValues: Tiny().stateDict())
    sd["classifier.0.bias"] = nil
    sd["features.0.weight"] = nil
    sd["head.weight"] = Tensor.zeros([1])
    let m = Tiny(seed: 3)
    let before = m.stateDict().map { $0.1.scalars }
    let text = errorText { try m.loadStateDict(sd) }
    #expect(text.contains("missing keys: features.0.weight, classifier.0.bias"), "\(text)")
    #expect(text.contains("unexpected keys: head.weight"), "\(text)")
    // Nothing was loaded.
    #expect(m.stateDict().map { $0.1.scalars } == before)
  }

  @Test func nonStrictLoadsTheCommonKeys() throws {
    let a = Tiny(seed: 1)
    var sd = Dictionary(uniqueKeysWithValues: a.stateDict())
    sd["classifier.0.bias"] = nil
    sd["extra"] = Tensor.zeros([3])
    let b = Tiny(seed: 2)
    let biasBefore = b.stateDict().last!.1.scalars
    try b.loadStateDict(sd, strict: false)
    #expect(b.stateDict()[0].1.scalars == a.stateDict()[0].1.scalars)
    #expect(b.stateDict().last!.1.scalars == biasBefore)
  }

  @Test func shapeMismatchNamesKeyAndShapes() throws {
    let a = Tiny(classes: 10)
    let b = Tiny(classes: 2)
    let sd = Dictionary(uniqueKeysWithValues: a.stateDict())
    for strict in [true, false] {
      let text = errorText { try b.loadStateDict(sd, strict: strict) }
      #expect(text.contains("classifier.0.weight: expected shape [2, 4], found [10, 4]"), "\(text)")
      #expect(text.contains("classifier.0.bias: expected shape [2], found [10]"), "\(text)")
    }
  }

  @Test func missingBatchCounterIsAccepted() throws {
    var sd = Dictionary(uniqueKeysWithValues: Tiny(seed: 4).stateDict())
    sd["features.1.num_batches_tracked"] = nil
    try Tiny().loadStateDict(sd, strict: true)
  }

  @Test func fileErrorsNameTheFile() throws {
    let url = temporaryFile()
    defer { try? FileManager.default.removeItem(at: url) }
    try Tiny(classes: 3).save(to: url)
    let text = errorText { try Tiny(classes: 2).load(from: url, strict: true) }
    #expect(text.hasPrefix(url.path), "\(text)")
    #expect(text.contains("classifier.0.weight"), "\(text)")
  }
}

/// The network of scripts/golden/state_dict_sample.py built from the real layers.
private final class RealTiny: Module {
  let features: Sequential
  let classifier: Sequential

  override init() {
    features = Sequential([
      Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, bias: false, seed: 1),
      BatchNorm2d(4), ReLU(),
    ])
    classifier = Sequential([Linear(inputFeatures: 4, outputFeatures: 2, seed: 2)])
    super.init()
    register(features, as: "features")
    register(classifier, as: "classifier")
  }

  override func forward(_ x: Tensor) throws -> Tensor {
    try classifier(try features(x).spatialMean().flattened())
  }
}

@Suite("State dict with layers")
struct StateDictLayerTests {
  @Test func pytorchWeightsGivePyTorchOutputs() throws {
    let url = try #require(
      Bundle.module.url(
        forResource: "state_dict_sample", withExtension: "safetensors", subdirectory: "Golden"))
    let io = try SafeTensors.read(
      try #require(
        Bundle.module.url(
          forResource: "state_dict_sample_io", withExtension: "safetensors", subdirectory: "Golden")
      ))
    let model = RealTiny()
    #expect(model.stateDict().map(\.0) == tinyNames)
    try model.load(from: url, strict: true)
    let x = try io.tensor("input")

    func close(_ a: Tensor, _ name: String) throws -> Bool {
      let b = try io.tensor(name)
      guard a.shape == b.shape else { return false }
      return zip(a.scalars, b.scalars).allSatisfy { abs($0 - $1) <= 1e-5 + 1e-4 * abs($1) }
    }
    model.eval()
    #expect(try close(withoutGradients { try model(x) }, "out_eval"))
    model.train()
    #expect(try close(withoutGradients { try model(x) }, "out_train"))
    let state = Dictionary(uniqueKeysWithValues: model.stateDict())
    #expect(try close(state["features.1.running_mean"]!, "after.running_mean"))
    #expect(try close(state["features.1.running_var"]!, "after.running_var"))
    #expect(state["features.1.num_batches_tracked"]!.item == 4)
  }
}
