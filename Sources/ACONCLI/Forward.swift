import ACONModels
import ACONNN
import ACONTensor
import ArgumentParser
import Foundation

/// `acon forward`: runs a network on a tensor file and writes logits (and gradients), for
/// checking parity with PyTorch.
struct Forward: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Run a network on `input` from a safetensors file; write `logits` (and with --grads, `loss` and `grad.<name>`)."
  )

  @Option(help: "Weights file (safetensors or PyTorch .pth).") var weights: String
  @Option(help: "Input file holding the F32 NCHW tensor `input` (and `labels` for --grads).")
  var input: String
  @Option(help: "Output safetensors file.") var output: String
  @Flag(help: "Training mode (batch statistics) instead of eval mode.") var train = false
  @Flag(help: "Also run mean cross-entropy backward and write `loss` and `grad.<name>`.")
  var grads = false
  @OptionGroup var modelOptions: ModelOptions

  func run() throws {
    let weightsFile = try readWeights(weights)
    let (model, config) = try modelOptions.loadModel(from: weightsFile, path: weights)
    let inputs = try SafeTensors.read(URL(fileURLWithPath: input))
    let x = try inputs.tensor("input", path: input)
    guard x.rank == 4, x.shape[1] == config.inputChannels else {
      throw CLIError(
        "\(input): `input` must be [N, \(config.inputChannels), H, W], not \(describe(x.shape))")
    }
    model.setTraining(train)
    var entries: [(String, Tensor)] = []
    if grads {
      let labelTensor = try inputs.tensor("labels", path: input)
      let labels = labelTensor.scalars.map { Int($0) }
      guard labels.count == x.shape[0] else {
        throw CLIError("\(input): `labels` has \(labels.count) values for \(x.shape[0]) inputs")
      }
      let logits = try model(x)
      let loss = try Tensor.crossEntropy(logits: logits, labels: labels)
      try loss.backward()
      entries.append(("logits", logits.detached))
      entries.append(("loss", loss.detached))
      for (name, p) in model.namedParameters() {
        entries.append(("grad." + name, p.grad ?? Tensor.zeros(p.value.shape)))
      }
    } else {
      let logits = try withoutGradients { try model(x) }
      entries.append(("logits", logits))
    }
    try SafeTensors.write(entries, metadata: config.metadata, to: URL(fileURLWithPath: output))
    print("wrote \(entries.count) tensors to \(output)")
  }
}
