import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import ArgumentParser
import Foundation

extension WeightInitialization: ExpressibleByArgument {}

/// `acon train`: the main job. With no flags it trains ShuffleNetV2-0.5x with ACON-C on
/// Fashion-MNIST for one epoch and prints the result.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Train a network with an ACON activation (default: ShuffleNetV2-0.5x, ACON-C, Fashion-MNIST, 1 epoch).",
    discussion: """
      Data-parallel: `mpirun -np K acon train ...` trains K replicas, each on its own share of \
      every epoch; --batch-size is per rank, so the global batch is K times it (scale --lr \
      yourself). Rank 0 writes the output directory; --resume continues on any K that \
      divides the run's global batch.
      """)

  @Option(help: "Model name (see `acon info --list`).") var model = ModelName.shuffleNetV2Half
  @Option(help: "Activation.") var activation = ActivationKind.aconC
  @OptionGroup var recipe: RecipeOptions
  @Option(help: "Random seed (initialisation, data order, augmentation).") var seed: UInt64 = 0
  @Option(
    name: .customLong("init"),
    help: "Weight initialisation: reference (the paper's) or pytorch (PyTorch's module defaults).")
  var initialization: WeightInitialization = .reference
  @Option(
    name: .customLong("generator-init"),
    help:
      "Initialisation of the meta-ACON generators alone (default: as --init), to tell which start matters."
  )
  var generatorInitialization: WeightInitialization?
  @Option(help: "Output directory for metrics.jsonl, model.safetensors and the checkpoint.")
  var out: String?
  @Flag(help: "Continue the run saved in --out exactly where it stopped.") var resume = false
  @Option(help: "Also write a checkpoint every N iterations.") var checkpointEvery = 0
  @Option(help: "Append each iteration's number and exact loss to this file.") var lossLog: String?
  @Flag(help: "No progress output.") var quiet = false
  @Flag(help: "Print the final metrics as one JSON object on the last line.") var json = false
  @OptionGroup var initialWeights: InitialWeightsOptions
  @OptionGroup(title: "Data-parallel training (under mpirun)") var parallel: DataParallelFlags

  func run() throws {
    guard let replicas = try parallel.replicas() else { return try train(replicas: nil) }
    try replicas.run { try train(replicas: replicas) }
  }

  func train(replicas: Replicas?) throws {
    let quiet = quiet || (replicas.map { $0.group.rank != 0 } ?? false)
    do {
      var config = try recipe.configuration(
        model: model.name, activation: activation.rawValue, seed: seed)
      config.checkpointEvery = checkpointEvery
      config.initialization = initialization
      config.generatorInitialization = generatorInitialization
      let directory =
        out ?? "runs/\(recipe.dataset.rawValue)-\(model)-\(activation.rawValue)-s\(seed)"
      InterruptSignal.install()
      let trainer = try Trainer(
        configuration: config, outputDirectory: URL(fileURLWithPath: directory), resume: resume,
        progress: ProgressReporter(enabled: !quiet), dataParallel: replicas?.dataParallel)
      if let replicas {
        // Rank 0's weights, as every data-parallel start: only it reads the file.
        if replicas.group.rank == 0 {
          try initialWeights.apply(to: trainer.model, resuming: resume, quiet: quiet)
        }
        try replicas.dataParallel.broadcastParameters(of: trainer.model)
      } else {
        try initialWeights.apply(to: trainer.model, resuming: resume, quiet: quiet)
      }
      // Rank 0 writes the log: the loss it sees is already the mean over the ranks.
      if let lossLog, (replicas?.group.rank ?? 0) == 0 {
        let log = try LossLog(path: lossLog)
        trainer.onIteration = { log.append(iteration: $0, loss: $1) }
      }
      let c = trainer.state.configuration
      if !quiet {
        standardError(
          "training \(c.model.model) with \(c.model.activation) on \(c.dataSet.rawValue): "
            + "\(trainer.model.parameterCount) parameters, \(trainer.totalIterations) iterations, "
            + "batch \(c.batchSize)\(replicas.map { " per rank x \($0.group.size) ranks" } ?? ""), lr \(c.learningRate) (\(c.schedule.rawValue)); writing \(directory)"
        )
      }
      let metrics = try trainer.run()
      if let replicas, replicas.group.rank == 0, !quiet {
        let d = replicas.dataParallel
        standardError(
          String(
            format:
              "data parallel: %d ranks, %d gradient buckets (%@ floats), %.2f ms per step waiting for reductions after the backward",
            d.size, d.bucketSizes.count, d.bucketSizes.map(String.init).joined(separator: ", "),
            d.reductionWaitSeconds / Double(max(1, d.steps)) * 1e3))
      }
      if let replicas, replicas.group.rank != 0 { return }
      guard let last = metrics.last else {
        print("nothing left to train: the run in \(directory) is complete")
        return
      }
      print(
        String(
          format:
            "result: %@ %@ on %@ after %d epoch(s): test top-1 %.2f%%, top-5 %.2f%%, loss %.4f; %.0f images/s",
          c.model.model, c.model.activation, c.dataSet.rawValue, last.epoch, last.testTop1 * 100,
          last.testTop5 * 100, last.testLoss, last.imagesPerSecond))
      print("weights: \(directory)/model.safetensors  metrics: \(directory)/metrics.jsonl")
      if json { print(String(decoding: try JSONEncoder.sortedKeys.encode(last), as: UTF8.self)) }
    } catch let error as TrainingError {
      // Under mpirun, `Replicas.run` decides how the job ends.
      if replicas != nil { throw error }
      throw CLIError(error.description)
    }
  }
}
