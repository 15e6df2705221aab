import ACONData
import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import ArgumentParser
import Foundation

/// `acon plot beta`: the learned switching factor beta of a weights file: per channel for the
/// ACON-A/B/C layers (the `.beta` parameters), and per sample for meta-ACON layers over test
/// images (the paper's figure 8).
struct PlotBeta: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "beta",
    abstract: "Plot per-channel beta of ACON-A/B/C layers and per-sample beta of meta-ACON layers.")

  @Option(help: "Weights file (safetensors or PyTorch .pth).") var weights: String
  @Option(help: "Output file (.svg or .png).") var output: String
  @Option(help: "Data set whose test images feed the meta-ACON layers (e.g. fashion-mnist).")
  var dataset: String?
  @Option(help: "Data directory (default: the data set's standard location).") var data: String?
  @Option(help: "Number of test images for the per-sample beta.") var images = 64
  @Option(help: "Batch size of the forward passes.") var batchSize = 32
  @Option(
    help:
      "Comma-separated meta-ACON layers: module names or indices in network order (default: up to 4 spread through the network)."
  )
  var layers: String?
  @OptionGroup var modelOptions: ModelOptions

  init() {}

  /// The per-channel beta of one ACON-A/B/C layer.
  struct ChannelBeta {
    /// The layer's module name (the parameter name without `.beta`).
    var layer: String
    var values: [Float]
  }

  /// The beta one meta-ACON layer generated for each image.
  struct SampleBeta {
    var layer: String
    /// One array per image: its beta per channel (channel-wise generators), its single beta
    /// (layer-wise) or its beta per element (pixel-wise).
    var perImage: [[Float]]
  }

  func validate() throws {
    try checkChartOutput(output)
    guard images >= 1, batchSize >= 1 else {
      throw ValidationError("--images and --batch-size must be at least 1")
    }
  }

  func run() throws {
    let file = try readWeights(weights)
    let channels = PlotBeta.channelBetas(file)
    var samples: [SampleBeta] = []
    if let dataset {
      samples = try sampleBetas(file, dataset: dataset)
    } else if channels.isEmpty {
      let hint =
        PlotBeta.hasMetaACON(file)
        ? ": it has meta-ACON layers, whose beta depends on the input: pass --dataset to plot it"
        : ""
      throw CLIError("\(weights) has no ACON-A/B/C beta parameters (names ending in .beta)\(hint)")
    }
    // The run's directory and the file name: "runs/acon/model.safetensors" -> "acon/model.safetensors".
    let title = URL(fileURLWithPath: weights).pathComponents.suffix(2).joined(separator: "/")
    try PlotBeta.figure(channels: channels, samples: samples, title: title).write(to: output)
    print("wrote \(output)")
    print(PlotBeta.summary(channels: channels, samples: samples))
  }

  /// Every `.beta` parameter of `file` in the file's order (network order for files written
  /// by this project and by PyTorch).
  static func channelBetas(_ file: SafeTensorsFile) -> [ChannelBeta] {
    file.names.filter { $0.hasSuffix(".beta") }.map { name in
      ChannelBeta(layer: String(name.dropLast(".beta".count)), values: file.tensors[name]!.scalars)
    }
  }

  /// Whether `file` has a meta-ACON layer: `p1` beside a generator (`fc1`, or `fc` for the
  /// layer- and pixel-wise ones) and no `beta`.
  static func hasMetaACON(_ file: SafeTensorsFile) -> Bool {
    file.names.contains { name in
      guard name.hasSuffix(".p1") else { return false }
      let prefix = String(name.dropLast("p1".count))
      return file.tensors[prefix + "beta"] == nil
        && file.names.contains { $0.hasPrefix(prefix + "fc") }
    }
  }

  /// Builds the model from `file` (its metadata, or the model flags), runs the first
  /// `--images` test images through it in eval mode and records the beta each chosen
  /// meta-ACON layer generates, through the layers' `betaObserver`.
  func sampleBetas(_ file: SafeTensorsFile, dataset: String) throws -> [SampleBeta] {
    let name = try DataSetName.parse(dataset)
    let (model, config) = try modelOptions.loadModel(from: file, path: weights)
    let metaLayers = model.namedModules().compactMap { name, module in
      (module as? MetaAconC).map { (name, $0) }
    }
    guard !metaLayers.isEmpty else {
      throw CLIError(
        "\(config.model) with \(config.activation) has no meta-ACON layers: drop --dataset")
    }
    let chosen = try PlotBeta.choose(layers, from: metaLayers.map(\.0))
    let splits = try DataSplits.open(name, directory: data, testLimit: images, augment: false)
    guard splits.inputChannels == config.inputChannels else {
      throw CLIError(
        "\(weights) takes \(config.inputChannels)-channel images but \(dataset) has \(splits.inputChannels)"
      )
    }
    let loader = try DataLoader(
      splits.test, batchSize: batchSize, shuffle: false, transform: splits.evalTransform,
      channelOrder: splits.channelOrder, scale: splits.scale)
    var recorded = [[[Float]]](repeating: [], count: chosen.count)
    for (slot, index) in chosen.enumerated() {
      metaLayers[index].1.betaObserver = { beta in
        let n = beta.shape[0]
        let all = beta.scalars
        let per = all.count / max(n, 1)
        for i in 0..<n { recorded[slot].append(Array(all[(i * per)..<((i + 1) * per)])) }
      }
    }
    defer { for (_, layer) in metaLayers { layer.betaObserver = nil } }
    model.eval()
    let stream = loader.batches(epoch: 0)
    try withoutGradients {
      while let batch = try stream.next() { _ = try model(batch.images) }
    }
    return chosen.enumerated().map { slot, index in
      SampleBeta(layer: metaLayers[index].0, perImage: recorded[slot])
    }
  }

  /// The indices of the layers `spec` names (module names or indices, comma-separated), or up
  /// to four spread evenly from the first layer to the last.
  static func choose(_ spec: String?, from names: [String]) throws -> [Int] {
    guard let spec else {
      let k = min(4, names.count)
      guard k > 1 else { return [0] }
      var picks: [Int] = []
      for i in 0..<k {
        let index = Int((Double(i) * Double(names.count - 1) / Double(k - 1)).rounded())
        if !picks.contains(index) { picks.append(index) }
      }
      return picks
    }
    return try spec.split(separator: ",").map { raw in
      let item = raw.trimmingCharacters(in: .whitespaces)
      if let index = names.firstIndex(of: item) { return index }
      if let index = Int(item), names.indices.contains(index) { return index }
      throw CLIError(
        "--layers: no meta-ACON layer '\(item)'; the layers are (by index): "
          + names.enumerated().map { "\($0) \($1)" }.joined(separator: ", "))
    }
  }

  /// A panel of per-channel beta per ACON layer, then one panel per meta-ACON layer with one
  /// column per image (its beta over channels or elements), stacked vertically.
  static func figure(channels: [ChannelBeta], samples: [SampleBeta], title: String) -> ChartFigure {
    var panels: [ChartPanel] = []
    var columns = 0
    if !channels.isEmpty {
      var panel = ChartPanel(
        title: "per-channel β of the ACON layers (\(channels.count) layers)", yLabel: "β",
        distributions: channels.enumerated().map { i, c in
          Distribution(
            label: c.layer, values: c.values.map(Double.init), color: ChartStyle.palette[i % 2])
        })
      panel.referenceLines = [0, 1]
      panels.append(panel)
      columns = max(columns, channels.count)
    }
    for (i, s) in samples.enumerated() {
      let perImage = s.perImage.first?.count ?? 0
      let what = perImage == 1 ? "one β per image" : "β of each image over its \(perImage) values"
      var panel = ChartPanel(
        title: "meta-ACON \(s.layer): \(what)", xLabel: "test image", yLabel: "β",
        distributions: s.perImage.enumerated().map { k, values in
          Distribution(
            label: "\(k)", values: values.map(Double.init),
            color: ChartStyle.palette[(2 + i) % ChartStyle.palette.count])
        })
      panel.referenceLines = [0, 1]
      panels.append(panel)
      columns = max(columns, s.perImage.count)
    }
    return ChartFigure(
      title: "learned β: \(title)", panels: panels, columns: 1,
      panelWidth: max(640, 90 + 20 * Double(columns)), panelHeight: 420)
  }

  /// Mean, min and max beta per layer, one line each.
  static func summary(channels: [ChannelBeta], samples: [SampleBeta]) -> String {
    func stats(_ v: [Float]) -> String {
      guard let lo = v.min(), let hi = v.max() else { return "no values" }
      let mean = v.reduce(0, +) / Float(v.count)
      return String(format: "mean %.4f, min %.4f, max %.4f", mean, lo, hi)
    }
    var lines: [String] = []
    if !channels.isEmpty { lines.append("per-channel beta (ACON-A/B/C):") }
    for c in channels {
      lines.append("  \(c.layer) (\(c.values.count) channels): \(stats(c.values))")
    }
    if !samples.isEmpty { lines.append("per-sample beta (meta-ACON):") }
    for s in samples {
      let means = s.perImage.map { $0.reduce(0, +) / Float(max($0.count, 1)) }
      let spread =
        means.isEmpty
        ? "" : String(format: "; image means %.4f to %.4f", means.min()!, means.max()!)
      lines.append(
        "  \(s.layer) (\(s.perImage.count) images): \(stats(s.perImage.flatMap { $0 }))\(spread)")
    }
    return lines.joined(separator: "\n")
  }
}
