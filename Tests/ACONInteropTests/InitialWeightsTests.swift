import ACONInterop
import ACONModels
import ACONNN
import ACONTensor
import Foundation
import Testing

@Suite("initial weights")
struct InitialWeightsTests {
  func model(classes: Int, seed: UInt64) throws -> Module {
    try ModelZoo.make(
      ModelConfiguration(
        model: "mobilenetv1-0.25", activation: "acon-c", classes: classes, inputChannels: 1,
        smallInput: true),
      seed: seed)
  }

  func file(of model: Module) -> SafeTensorsFile {
    let state = model.stateDict()
    return SafeTensorsFile(
      tensors: Dictionary(uniqueKeysWithValues: state), dtypes: [:], names: state.map(\.0),
      metadata: [:])
  }

  @Test func loadsEveryTensorStrictly() throws {
    let source = try model(classes: 10, seed: 1)
    let target = try model(classes: 10, seed: 2)
    let reset = try InitialWeights.load(
      file(of: source), into: target, resetClassifier: false, path: "w")
    #expect(reset.isEmpty)
    for ((name, a), (_, b)) in zip(source.stateDict(), target.stateDict()) {
      #expect(a.scalars == b.scalars, "\(name)")
    }
  }

  @Test func aDifferentClassCountNeedsResetClassifier() throws {
    let source = try model(classes: 10, seed: 1)
    let target = try model(classes: 5, seed: 2)
    let freshClassifier = target.stateDict().filter { $0.0.hasPrefix("classifier.") }
    #expect {
      try InitialWeights.load(file(of: source), into: target, resetClassifier: false, path: "w.pth")
    } throws: { error in
      let text = "\(error)"
      return text.contains("classifier.weight: expected shape [5, 256], found [10, 256]")
        && text.contains("pass --reset-classifier")
    }
    let reset = try InitialWeights.load(
      file(of: source), into: target, resetClassifier: true, path: "w.pth")
    #expect(reset == ["classifier.weight", "classifier.bias"])
    let loaded = Dictionary(uniqueKeysWithValues: target.stateDict())
    for (name, value) in source.stateDict() where !name.hasPrefix("classifier.") {
      #expect(loaded[name]?.scalars == value.scalars, "\(name)")
    }
    for (name, value) in freshClassifier {
      #expect(loaded[name]?.scalars == value.scalars, "\(name)")
    }
  }

  @Test func missingAndUnexpectedNamesAreErrors() throws {
    let target = try model(classes: 10, seed: 2)
    var f = file(of: try model(classes: 10, seed: 1))
    f.tensors["features.0.0.weight"] = nil
    f.names.removeAll { $0 == "features.0.0.weight" }
    f.tensors["extra.weight"] = Tensor.zeros([1])
    f.names.append("extra.weight")
    #expect {
      try InitialWeights.load(f, into: target, resetClassifier: true, path: "w")
    } throws: { error in
      "\(error)".contains("missing keys: features.0.0.weight")
        && "\(error)".contains("unexpected keys: extra.weight")
    }
  }
}
