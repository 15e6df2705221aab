import ACONModels
import ACONNN
import ACONTensor
import ArgumentParser
import Foundation

/// `acon info`: parameter count and MACs (the paper's FLOPs) of a model, with a per-layer table.
struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Parameters and multiply-accumulates of a model (the paper's FLOPs column).")

  @OptionGroup var network: NetworkOptions
  @Flag(help: "List the model and activation names.") var list = false
  @Flag(help: "Print one JSON object (params, macs) as the last line instead of the table.")
  var json = false
  @Flag(
    help: "Print the module tree (names, types, settings, parameter shapes) instead of the table.")
  var tree = false

  func run() throws {
    let (model, activation, inputSize, classes, inputChannels) = (
      network.model.name, network.activation.rawValue, network.inputSize, network.classes,
      network.inputChannels
    )
    if list {
      print("models: " + ModelZoo.names.joined(separator: ", "))
      print("activations: " + ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))
      return
    }
    guard inputSize >= 1 else { throw CLIError("--input-size must be positive") }
    let config = network.configuration
    let network = try ModelZoo.make(config)
    if tree {
      print(network)
      return
    }
    let c = try ModelComplexity.measure(network, inputChannels: inputChannels, inputSize: inputSize)
    if json {
      let object: [String: Any] = [
        "model": model, "activation": activation, "input_size": inputSize, "classes": classes,
        "params": c.parameters, "macs": c.macs,
      ]
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
      return
    }
    let nameWidth = max(20, c.layers.map(\.name.count).max() ?? 0)
    print(
      "layer".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
        + "  op      output              params        MACs")
    for l in c.layers {
      let shape = describe(l.outputShape)
      print(
        l.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
          + l.operation.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
          + shape.padding(toLength: 18, withPad: " ", startingAt: 0)
          + String(format: "%8d  %12d", l.parameters, l.macs))
    }
    print(
      String(
        format:
          "%@ with %@ at %dx%d, %d classes: %.2fM parameters, %.1fM MACs (FLOPs as the paper counts them)",
        model, activation, inputSize, inputSize, classes, Double(c.parameters) / 1e6,
        Double(c.macs) / 1e6))
  }
}
