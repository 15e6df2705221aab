import ACONModels
import ACONNN
import ArgumentParser

/// The flags that choose a network from the zoo without weights (`acon info`, `acon bench`).
struct NetworkOptions: ParsableArguments {
  @Option(help: "Model name (see `acon info --list`).") var model = ModelName.shuffleNetV2Half
  @Option(help: "Activation.") var activation = ActivationKind.aconC
  @Option(help: "Input size (square).") var inputSize = 224
  @Option(help: "Number of classes.") var classes = 1000
  @Option(help: "Input channels.") var inputChannels = 3
  @Flag(help: "Use the small-input stem (stride-1 stem, no max-pool).") var smallInput = false

  /// The model configuration these flags describe.
  var configuration: ModelConfiguration {
    ModelConfiguration(
      model: model.name, activation: activation.rawValue, classes: classes,
      inputChannels: inputChannels,
      smallInput: smallInput)
  }
}
