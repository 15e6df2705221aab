import ACONInterop
import ACONNN
import ArgumentParser

/// `acon train --init-weights W [--reset-classifier]`: start from given weights.
struct InitialWeightsOptions: ParsableArguments {
  @Option(
    help:
      "Start from these weights (safetensors or PyTorch .pth), strictly checked by name and shape.")
  var initWeights: String?
  @Flag(help: "With --init-weights: keep a fresh classifier (a different class count).")
  var resetClassifier = false

  func validate() throws {
    if resetClassifier && initWeights == nil {
      throw ValidationError("--reset-classifier needs --init-weights")
    }
  }

  /// Loads the weights into `model`; a resumed run continues from its checkpoint instead.
  func apply(to model: Module, resuming: Bool, quiet: Bool) throws {
    guard let initWeights else { return }
    if resuming {
      standardError(
        "note: --resume continues from the run's checkpoint; --init-weights is not applied")
      return
    }
    let reset = try InitialWeights.load(
      WeightsFile.read(initWeights), into: model, resetClassifier: resetClassifier,
      path: initWeights)
    if !quiet {
      standardError(
        "initial weights from \(initWeights)"
          + (reset.isEmpty ? "" : "; fresh \(reset.joined(separator: ", "))"))
    }
  }
}
