import ACONInterop
import ACONModels
import ArgumentParser
import Foundation

/// `acon export`: a network's evaluation graph as an ONNX file.
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Export a network's evaluation graph to ONNX (IR version \(ONNXModel.irVersion), opset \(ONNXModel.defaultOpset) by default).",
    discussion: """
      Writes ONNX IR version \(ONNXModel.irVersion) with the default-domain opset \(ONNXModel.defaultOpset) \
      (--opset \(ONNXModel.supportedOpsets.lowerBound)-\(ONNXModel.supportedOpsets.upperBound)), which onnxruntime \
      accepts from release 1.14 on. Every model of the zoo with every activation: batch norms folded \
      into the convolutions before them, the ACON family as Mul/Sigmoid/Add (HardSigmoid for the hard \
      variants) with [1,C,1,1] initializers, meta-ACON's generator as GlobalAveragePool + 1x1 Conv + \
      Sigmoid. Input `input` [N, C, S, S] (float32, the layout `acon forward` takes), output `logits` \
      [N, classes]; N is 1 (or --batch-size), or symbolic with --dynamic-batch.
      """)

  @Option(help: "Weights file (safetensors or PyTorch .pth).") var weights: String
  @Option(help: "The ONNX file to write.") var output: String
  @Option(
    help:
      "Default-domain operator set version (\(ONNXModel.supportedOpsets.lowerBound)-\(ONNXModel.supportedOpsets.upperBound))."
  )
  var opset = ONNXModel.defaultOpset
  @Option(help: "Input height and width (default: 224, or 28 with the small-input stem).")
  var inputSize: Int?
  @Option(help: "Batch size written into the input's shape.") var batchSize = 1
  @Flag(help: "A symbolic batch dimension (`batch`) instead of a fixed one.") var dynamicBatch =
    false
  @OptionGroup var modelOptions: ModelOptions

  func run() throws {
    let file = try readWeights(weights)
    let (model, config) = try modelOptions.loadModel(from: file, path: weights)
    let options = ONNXExporter.Options(
      inputSize: inputSize ?? (config.smallInput ? 28 : 224), batchSize: batchSize,
      dynamicBatch: dynamicBatch,
      opset: opset)
    let onnx = try ONNXExporter.export(model, configuration: config, options: options)
    do {
      try Data(onnx.serialized()).write(to: URL(fileURLWithPath: output), options: .atomic)
    } catch {
      throw CLIError("\(output): cannot write: \(error.localizedDescription)")
    }
    let counts = ONNXExporter.operatorCounts(onnx).sorted {
      ($0.value, $1.key) > ($1.value, $0.key)
    }
    print(
      "wrote \(output): \(config.model) \(config.activation), IR \(ONNXModel.irVersion), opset \(opset), "
        + "\(onnx.graph.nodes.count) nodes ("
        + counts.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")")
  }
}
