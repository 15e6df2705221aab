import ACONData
import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import ArgumentParser
import Foundation

/// `acon eval`: top-1, top-5 and loss of saved weights on a data set's test split.
struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate weights on a data set's test split: top-1, top-5 and loss.")

  @Option(help: "Weights file (safetensors or PyTorch .pth).") var weights: String
  @Option(help: "Data set: fashion-mnist, mnist, cifar10, cifar100, imagefolder.") var dataset =
    "fashion-mnist"
  @Option(help: "Data directory (default: the data set's standard location).") var data: String?
  @Option(help: "Batch size.") var batchSize = 256
  @Option(help: "Use only the first N test images.") var limit: Int?
  @OptionGroup var modelOptions: ModelOptions
  @Flag(help: "Print one JSON object with top1, top5 and loss as the last line.") var json = false

  func run() throws {
    let name = try DataSetName.parse(dataset)
    guard batchSize >= 1 else { throw CLIError("--batch-size must be at least 1") }
    let file = try readWeights(weights)
    let (model, config) = try modelOptions.loadModel(from: file, path: weights)
    let splits = try DataSplits.open(name, directory: data, testLimit: limit, augment: false)
    guard splits.classes <= config.classes else {
      throw CLIError(
        "\(weights) has \(config.classes) classes but \(dataset) has \(splits.classes)")
    }
    let loader = try DataLoader(
      splits.test, batchSize: batchSize, shuffle: false, transform: splits.evalTransform,
      channelOrder: splits.channelOrder, scale: splits.scale)
    let start = Date()
    let m = try evaluate(model: model, loader: loader)
    let seconds = Date().timeIntervalSince(start)
    print(
      String(
        format: "%@ %@ on %@ (%d images): top-1 %.2f%%, top-5 %.2f%%, loss %.4f (%.1f s)",
        config.model, config.activation, dataset, m.samples, m.top1 * 100, m.top5 * 100, m.loss,
        seconds))
    if json {
      let object: [String: Double] = [
        "top1": m.top1, "top5": m.top5, "loss": m.loss, "images": Double(m.samples),
      ]
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
    }
  }
}
