import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import ArgumentParser
import Foundation

/// `acon compare`: one model, several activations and seeds; a table of test error like the
/// paper's (mean ± standard deviation over seeds), every run's metrics kept.
struct Compare: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Train one model with several activations and seeds; print mean ± std test error per activation."
  )

  @Option(help: "Model name (see `acon info --list`).") var model = ModelName.shuffleNetV2Half
  @Option(help: "Comma-separated activations; the first is the baseline of the table.")
  var activations = CommaSeparated<ActivationKind>([.relu, .swish, .aconC, .metaAcon])
  @Option(help: "Comma-separated seeds.") var seeds = CommaSeparated<UInt64>([0, 1, 2])
  @OptionGroup var recipe: RecipeOptions
  @Option(help: "Directory for the runs (one sub-directory per activation and seed).") var out =
    "runs/compare"
  @Flag(help: "Reuse finished runs found in --out instead of training them again.") var reuse =
    false
  @Flag(help: "No progress output.") var quiet = false

  func run() throws {
    let names = activations.values.map(\.rawValue)
    let seedList = seeds.values
    var rows: [(String, [Double], Int)] = []
    for name in names {
      var errors: [Double] = []
      var params = 0
      for seed in seedList {
        let directory = URL(fileURLWithPath: out).appendingPathComponent(
          "\(model)-\(name)-s\(seed)")
        let metricsFile = directory.appendingPathComponent("metrics.jsonl")
        if reuse, let last = try? Self.lastMetrics(metricsFile), last.epoch >= recipe.epochs {
          errors.append(1 - last.testTop1)
          if params == 0 {
            params = Self.parameterCount(directory.appendingPathComponent("model.safetensors"))
          }
          continue
        }
        try? FileManager.default.removeItem(at: directory)
        let config = try recipe.configuration(model: model.name, activation: name, seed: seed)
        let trainer = try Trainer(
          configuration: config, outputDirectory: directory, resume: false,
          progress: ProgressReporter(enabled: !quiet))
        params = trainer.model.parameterCount
        if !quiet { standardError("== \(model) \(name) seed \(seed)") }
        let metrics = try trainer.run()
        errors.append(1 - (metrics.last?.testTop1 ?? 0))
      }
      rows.append((name, errors, params))
    }
    let limit = recipe.trainLimit.map { ", first \($0) training images" } ?? ""
    print(
      "| \(model) on \(recipe.dataset.rawValue)\(limit), \(recipe.epochs) epoch(s) | params | test error % (mean ± std over \(seedList.count) seeds) | vs \(rows[0].0) | runs |"
    )
    print("|---|---|---|---|---|")
    let baseline = Self.meanAndStd(rows[0].1.map { $0 * 100 }).0
    for (name, errors, params) in rows {
      let (mean, std) = Self.meanAndStd(errors.map { $0 * 100 })
      let runs = errors.map { String(format: "%.2f", $0 * 100) }.joined(separator: ", ")
      let paramText = params > 0 ? String(format: "%.3fM", Double(params) / 1e6) : "-"
      print(
        "| \(name) | \(paramText) | \(String(format: "%.2f ± %.2f", mean, std)) | \(String(format: "%+.2f", mean - baseline)) | \(runs) |"
      )
    }
  }

  static func lastMetrics(_ url: URL) throws -> EpochMetrics? {
    let text = try String(contentsOf: url, encoding: .utf8)
    guard let line = text.split(separator: "\n").last else { return nil }
    return try JSONDecoder().decode(EpochMetrics.self, from: Data(line.utf8))
  }

  /// Learnable parameters in a saved model (running statistics excluded); 0 when unreadable.
  static func parameterCount(_ url: URL) -> Int {
    guard let file = try? SafeTensors.read(url) else { return 0 }
    let buffers = ["running_mean", "running_var", "num_batches_tracked"]
    return file.names.filter { name in !buffers.contains { name.hasSuffix($0) } }
      .reduce(0) { $0 + (file.tensors[$1]?.count ?? 0) }
  }

  /// Mean and sample standard deviation (n - 1), as tables of repeated runs report.
  static func meanAndStd(_ values: [Double]) -> (Double, Double) {
    let mean = values.reduce(0, +) / Double(values.count)
    guard values.count > 1 else { return (mean, 0) }
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
    return (mean, variance.squareRoot())
  }
}
