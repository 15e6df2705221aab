import ACONModels
import ACONNN
import ACONTensor
import ArgumentParser
import Foundation

/// Model flags shared by the commands that read weights: optional when the weights file was
/// written by this project (its metadata holds the configuration), needed for reference weights.
struct ModelOptions: ParsableArguments {
  @Option(help: "Model name (default: from the weights file's metadata).") var model: String?
  @Option(help: "Activation (default: from the weights file's metadata).") var activation: String?
  @Option(help: "Number of classes (default: from the metadata or the classifier's shape).")
  var classes: Int?
  @Option(help: "Input channels (default: from the metadata or the first convolution).")
  var inputChannels: Int?
  @Flag(help: "Use the small-input stem (stride-1 stem, no max-pool).") var smallInput = false

  /// Builds the network described by the flags and `file`'s metadata, and loads `file` into it
  /// with strict key and shape checks.
  func loadModel(from file: SafeTensorsFile, path: String) throws -> (Module, ModelConfiguration) {
    var config = ModelConfiguration(metadata: file.metadata)
    if config == nil {
      guard let model, let activation else {
        throw CLIError(
          "\(path) has no acon model metadata: pass --model and --activation (and --classes if not 1000)"
        )
      }
      config = ModelConfiguration(model: model, activation: activation)
      config!.classes = Self.inferredClasses(file) ?? 1000
      config!.inputChannels = Self.inferredInputChannels(file) ?? 3
    }
    var c = config!
    if let model { c.model = model }
    if let activation { c.activation = activation }
    if let classes { c.classes = classes }
    if let inputChannels { c.inputChannels = inputChannels }
    if smallInput { c.smallInput = true }
    let network = try ModelZoo.make(c)
    do {
      try network.loadStateDict(file.tensors, strict: true)
    } catch {
      throw CLIError("\(path) does not fit \(c.model) with \(c.activation): \(error)")
    }
    return (network, c)
  }

  static let classifierKeys = [
    "classifier.0.weight", "classifier.1.weight", "classifier.weight", "fc.weight",
  ]

  static func inferredClasses(_ file: SafeTensorsFile) -> Int? {
    for key in classifierKeys {
      if let t = file.tensors[key] ?? file.tensors["module." + key], t.rank == 2 {
        return t.shape[0]
      }
    }
    return nil
  }

  static func inferredInputChannels(_ file: SafeTensorsFile) -> Int? {
    for key in ["first_conv.0.weight", "conv1.weight", "features.0.0.weight"] {
      if let t = file.tensors[key] ?? file.tensors["module." + key], t.rank == 4 {
        return t.shape[1]
      }
    }
    return nil
  }
}
