import ArgumentParser
import Foundation

/// `acon plot`: figures from training runs and weights files.
struct Plot: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Plot training curves or the learned beta of ACON layers to SVG or PNG.",
    subcommands: [PlotCurves.self, PlotBeta.self])
}

/// Checks that `path` names an SVG or PNG file (the formats `ChartFigure.write` knows).
func checkChartOutput(_ path: String) throws {
  let name = path.lowercased()
  guard name.hasSuffix(".svg") || name.hasSuffix(".png") else {
    throw ValidationError("--output must name an .svg or .png file")
  }
}

/// `acon plot curves`: train loss, test top-1 error and test loss against epoch, one line per
/// run, from the `metrics.jsonl` files `acon train` writes.
struct PlotCurves: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "curves",
    abstract: "Plot train loss, test top-1 error and test loss per epoch for one or more runs.")

  @Option(help: "A run's metrics.jsonl (or its directory); repeat for several runs.")
  var metrics: [String] = []
  @Option(help: "Comma-separated legend labels, one per run (default: each run's directory name).")
  var labels: String?
  @Option(help: "Output file (.svg or .png).") var output: String

  init() {}

  /// One epoch of a run: the values the curves draw.
  struct Epoch: Equatable {
    var epoch: Int
    var trainLoss: Double
    /// Test top-1 accuracy in [0, 1] (metrics.jsonl's `test_top1`).
    var testTop1: Double
    var testLoss: Double
  }

  /// A run: its label and its epochs in order.
  struct Run {
    var label: String
    var epochs: [Epoch]
  }

  func validate() throws {
    try checkChartOutput(output)
    guard !metrics.isEmpty else { throw ValidationError("pass at least one --metrics FILE") }
    if let labels,
      labels.split(separator: ",", omittingEmptySubsequences: false).count != metrics.count
    {
      throw ValidationError("--labels has to give one label per --metrics file (\(metrics.count))")
    }
  }

  func run() throws {
    let runs = try loadRuns()
    try PlotCurves.figure(runs).write(to: output)
    var lines = ["wrote \(output)"]
    for run in runs {
      let last = run.epochs[run.epochs.count - 1]
      let best = run.epochs.map(\.testTop1).max()!
      lines.append(
        String(
          format: "%@: %d epochs, final train loss %.4f, test top-1 error %.2f%% (best %.2f%%)",
          run.label, run.epochs.count, last.trainLoss, (1 - last.testTop1) * 100, (1 - best) * 100))
    }
    print(lines.joined(separator: "\n"))
  }

  /// Reads every `--metrics` file with its label.
  func loadRuns() throws -> [Run] {
    let names = labels.map {
      $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }
    return try metrics.enumerated().map { i, path in
      let file = PlotCurves.metricsFile(path)
      let label =
        names?[i] ?? URL(fileURLWithPath: file).deletingLastPathComponent().lastPathComponent
      return Run(label: label, epochs: try PlotCurves.readMetrics(file))
    }
  }

  /// `path` itself, or `path/metrics.jsonl` when `path` is a directory.
  static func metricsFile(_ path: String) -> String {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
      isDirectory.boolValue
    {
      return (path as NSString).appendingPathComponent("metrics.jsonl")
    }
    return path
  }

  /// The epochs of a `metrics.jsonl` file, sorted by epoch; a repeated epoch (a resumed run)
  /// keeps its last line. Errors name the file and line.
  static func readMetrics(_ path: String) throws -> [Epoch] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw CLIError("cannot read metrics file \(path)")
    }
    var byEpoch: [Int: Epoch] = [:]
    for (index, line) in String(decoding: data, as: UTF8.self).split(
      separator: "\n", omittingEmptySubsequences: false
    ).enumerated() {
      let location = "\(path) line \(index + 1)"
      guard !line.allSatisfy(\.isWhitespace) else { continue }
      let object: Any
      do {
        object = try JSONSerialization.jsonObject(with: Data(line.utf8))
      } catch {
        throw CLIError("\(location): not valid JSON")
      }
      guard let fields = object as? [String: Any] else {
        throw CLIError("\(location): expected a JSON object, one per epoch")
      }
      func number(_ key: String) throws -> Double {
        guard let value = fields[key] as? NSNumber else {
          throw CLIError("\(location): missing or non-numeric \"\(key)\"")
        }
        return value.doubleValue
      }
      let epoch = try number("epoch")
      guard epoch == epoch.rounded(), epoch >= 0, epoch < 1e9 else {
        throw CLIError("\(location): \"epoch\" must be a non-negative integer")
      }
      byEpoch[Int(epoch)] = Epoch(
        epoch: Int(epoch), trainLoss: try number("train_loss"), testTop1: try number("test_top1"),
        testLoss: try number("test_loss"))
    }
    guard !byEpoch.isEmpty else { throw CLIError("\(path) holds no epochs") }
    return byEpoch.values.sorted { $0.epoch < $1.epoch }
  }

  /// Three panels side by side, one line per run in each, with markers at the epochs.
  static func figure(_ runs: [Run]) -> ChartFigure {
    func series(_ value: (Epoch) -> Double) -> [LineSeries] {
      runs.enumerated().map { i, run in
        LineSeries(
          name: run.label, color: ChartStyle.palette[i % ChartStyle.palette.count],
          dash: i >= ChartStyle.palette.count ? "6,3" : nil,
          points: run.epochs.map { (Double($0.epoch), value($0)) }, markers: true)
      }
    }
    var panels = [
      ChartPanel(title: "train loss", xLabel: "epoch", yLabel: "loss", lines: series(\.trainLoss)),
      ChartPanel(
        title: "test top-1 error", xLabel: "epoch", yLabel: "error (%)",
        lines: series { (1 - $0.testTop1) * 100 }),
      ChartPanel(title: "test loss", xLabel: "epoch", yLabel: "loss", lines: series(\.testLoss)),
    ]
    for i in panels.indices { panels[i].integerXTicks = true }
    return ChartFigure(
      panels: panels,
      columns: 3, panelWidth: 420, panelHeight: 360)
  }
}
