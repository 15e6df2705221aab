import ACONData
import ACONModels
import ACONNN
import ACONTensor
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One line of `metrics.jsonl`: the state of the run at the end of an epoch.
public struct EpochMetrics: Codable, Equatable, Sendable {
  public var epoch: Int
  public var iteration: Int
  public var lr: Float
  public var trainLoss: Double
  public var trainTop1: Double
  public var testLoss: Double
  public var testTop1: Double
  public var testTop5: Double
  public var imagesPerSecond: Double
  public var seconds: Double

  enum CodingKeys: String, CodingKey {
    case epoch, iteration, lr, seconds
    case trainLoss = "train_loss"
    case trainTop1 = "train_top1"
    case testLoss = "test_loss"
    case testTop1 = "test_top1"
    case testTop5 = "test_top5"
    case imagesPerSecond = "images_per_second"
  }
}

/// Ctrl-C and SIGTERM handling: the first SIGINT or SIGTERM (what batch schedulers and
/// `kill` send) asks the loop to save a checkpoint and stop.
public enum InterruptSignal {
  nonisolated(unsafe) static var requested: Int32 = 0

  /// Installs the handler for SIGINT and SIGTERM.
  public static func install() {
    var set = sigset_t()
    sigemptyset(&set)
    for number in [SIGINT, SIGTERM] {
      signal(number) { received in InterruptSignal.requested = received }
      sigaddset(&set, number)
    }
    // A parent may have left them blocked (test runners, some shells' background jobs).
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
  }

  /// Whether an interrupt arrived.
  public static var isRequested: Bool { requested != 0 }
}

/// Trains a model on a data set with the reference recipe, writing metrics, weights and
/// checkpoints to an output directory.
public final class Trainer {
  public let configuration: TrainingConfiguration
  public let model: Module
  public let optimizer: Optimizer
  public let splits: DataSplits
  public let trainLoader: DataLoader
  public let testLoader: DataLoader
  public let schedule: LearningRateSchedule
  public private(set) var state: TrainingState
  /// Where `metrics.jsonl`, `model.safetensors` and `checkpoint.safetensors` go (nil: nowhere).
  public let outputDirectory: URL?
  /// Called after every iteration with the iteration number (1-based) and the loss.
  public var onIteration: ((Int, Float) -> Void)?
  /// Stops (saving a checkpoint) after this many iterations, as an interruption would.
  public var stopAfterIteration: Int?
  /// Receives progress and log lines.
  public var progress: ProgressReporter
  /// The replicas of data-parallel training (nil: this process alone).
  public let dataParallel: DataParallel?

  public var checkpointURL: URL? {
    outputDirectory?.appendingPathComponent("checkpoint.safetensors")
  }
  public var modelURL: URL? { outputDirectory?.appendingPathComponent("model.safetensors") }
  public var metricsURL: URL? { outputDirectory?.appendingPathComponent("metrics.jsonl") }

  /// Prepares a run; with `resume`, continues from the checkpoint in `outputDirectory`. With
  /// `dataParallel`, this process is one of its replicas (see ``DataParallel``): the batch
  /// size is per replica, and a run resumed on another number of replicas keeps its global
  /// batch.
  public init(
    configuration requested: TrainingConfiguration, outputDirectory: URL?, resume: Bool,
    progress: ProgressReporter = ProgressReporter(), dataParallel: DataParallel? = nil
  ) throws {
    let replicas = dataParallel?.size ?? 1
    var configuration = requested
    var resumeFile: SafeTensorsFile? = nil
    var resumedState: TrainingState? = nil
    if resume {
      guard let outputDirectory else {
        throw TrainingError.invalidConfiguration("--resume needs --out DIR holding a checkpoint")
      }
      let url = outputDirectory.appendingPathComponent("checkpoint.safetensors")
      guard FileManager.default.fileExists(atPath: url.path) else {
        throw TrainingError.badCheckpoint("no checkpoint to resume at \(url.path)")
      }
      let (s, file) = try Checkpoint.readState(url)
      // The run continues with its own settings; only the length may be extended.
      let epochs = max(s.configuration.epochs, requested.epochs)
      configuration = s.configuration
      configuration.epochs = epochs
      configuration.batchSize = try DataParallel.batchSize(
        s.configuration.batchSize, resumedFrom: s.worldSize ?? 1, on: replicas)
      resumedState = s
      resumeFile = file
    }
    try configuration.validate()
    self.configuration = configuration
    self.outputDirectory = outputDirectory
    self.progress = progress
    self.dataParallel = dataParallel
    splits = try DataSplits.open(
      configuration.dataSet, directory: configuration.dataDirectory,
      trainLimit: configuration.trainLimit, testLimit: configuration.testLimit,
      augment: configuration.augment)
    var modelConfiguration = configuration.model
    modelConfiguration.classes = splits.classes
    modelConfiguration.inputChannels = splits.inputChannels
    modelConfiguration.smallInput = modelConfiguration.smallInput || splits.smallInput
    self.model = try ModelZoo.make(
      modelConfiguration, seed: configuration.seed,
      initialization: configuration.initialization ?? .reference,
      generatorInitialization: configuration.generatorInitialization)
    var stored = configuration
    stored.model = modelConfiguration
    self.state = resumedState ?? TrainingState(configuration: stored)
    self.state.configuration.epochs = configuration.epochs
    self.state.configuration.batchSize = configuration.batchSize
    self.state.worldSize = replicas
    let groups = ParameterGroup.referenceGroups(of: model, weightDecay: configuration.weightDecay)
    switch configuration.optimizer {
    case .sgd: optimizer = SGD(groups: groups, momentum: configuration.momentum)
    case .adam: optimizer = Adam(groups: groups)
    case .adamw: optimizer = Adam(groups: groups, decoupled: true)
    }
    trainLoader = try DataLoader(
      splits.train, batchSize: configuration.batchSize, shuffle: true, seed: configuration.seed,
      transform: splits.trainTransform, channelOrder: splits.channelOrder, scale: splits.scale,
      shard: dataParallel?.shard(padding: true) ?? .whole)
    testLoader = try DataLoader(
      splits.test, batchSize: configuration.evalBatchSize, shuffle: false, seed: configuration.seed,
      transform: splits.evalTransform, channelOrder: splits.channelOrder, scale: splits.scale,
      shard: dataParallel?.shard(padding: false) ?? .whole)
    let total = configuration.iterations ?? configuration.epochs * trainLoader.batchesPerEpoch
    schedule = LearningRateSchedule(
      baseRate: configuration.learningRate, decay: configuration.schedule,
      totalIterations: total, warmupIterations: configuration.warmupIterations)
    if let resumeFile {
      guard state.batchInEpoch <= trainLoader.batchesPerEpoch else {
        throw TrainingError.badCheckpoint(
          "the checkpoint stands at batch \(state.batchInEpoch) of an epoch of \(trainLoader.batchesPerEpoch)"
        )
      }
      try Checkpoint.restore(resumeFile, model: model, optimizer: optimizer)
      optimizer.stepCount = state.optimizerSteps
      for (name, module) in model.namedModules() {
        if let dropout = module as? Dropout, let g = state.dropoutGenerators[name] {
          dropout.generator = g
        }
      }
    }
    if let dataParallel {
      try dataParallel.start(
        model: model,
        settings: dataParallel.settings(configuration: state.configuration, state: state))
      if !dataParallel.isRoot {
        // The checkpoint holds the epoch's metrics summed over the ranks: count them once.
        state.trainMetrics = ClassificationMetrics()
      }
    }
  }

  /// Total iterations of the run.
  public var totalIterations: Int { schedule.totalIterations }

  /// Trains to the end (or to `stopAfterIteration`), returning the metrics of each epoch
  /// finished by this call.
  @discardableResult
  public func run() throws -> [EpochMetrics] {
    if let outputDirectory {
      // Only the writing rank clears temporaries (another host's writer is not a local process).
      try OutputDirectory.prepare(
        outputDirectory, removingStaleTemporaries: dataParallel?.isRoot ?? true)
    }
    var finished: [EpochMetrics] = []
    let perEpoch = trainLoader.batchesPerEpoch
    while state.epoch < configuration.epochs && state.iteration < totalIterations {
      model.train()
      let stream = trainLoader.batches(epoch: state.epoch, startingAt: state.batchInEpoch)
      progress.startEpoch(
        state.epoch + 1, of: configuration.epochs, batches: perEpoch, done: state.batchInEpoch)
      var lastRate = schedule.rate(at: state.iteration)
      while state.iteration < totalIterations, let batch = try stream.next() {
        let start = Date()
        let rate = schedule.rate(at: state.iteration)
        lastRate = rate
        let logits =
          try dataParallel?.forward(model: model) { try model(batch.images) } ?? model(batch.images)
        let loss = try Tensor.crossEntropy(
          logits: logits, labels: batch.labels, labelSmoothing: configuration.labelSmoothing)
        var value = loss.item
        var interrupted = false
        if let dataParallel {
          // The mean loss over the ranks, so that every rank stops alike on a non-finite one.
          (value, interrupted) = try dataParallel.backward(
            loss, localLoss: value, interrupt: InterruptSignal.isRequested)
        }
        guard value.isFinite else {
          throw TrainingError.nonFiniteLoss(iteration: state.iteration + 1, loss: value)
        }
        if dataParallel == nil {
          try loss.backward()
          interrupted = InterruptSignal.isRequested
        }
        optimizer.step(learningRate: rate)
        optimizer.zeroGrad()
        try dataParallel?.verifyReplicas(of: model, iteration: state.iteration + 1)
        state.trainMetrics.add(loss: value, logits: logits.detached, labels: batch.labels)
        state.iteration += 1
        state.batchInEpoch += 1
        state.epochSeconds += Date().timeIntervalSince(start)
        onIteration?(state.iteration, value)
        progress.iteration(
          state.batchInEpoch, loss: state.trainMetrics.loss, top1: state.trainMetrics.top1,
          imagesPerSecond: Double(state.trainMetrics.samples) / max(state.epochSeconds, 1e-9))
        if configuration.checkpointEvery > 0, state.iteration % configuration.checkpointEvery == 0 {
          try saveCheckpoint()
        }
        if interrupted {
          stream.cancel()
          try saveCheckpoint()
          throw TrainingError.interrupted(checkpoint: checkpointURL?.path ?? "(no --out given)")
        }
        if let stop = stopAfterIteration, state.iteration >= stop {
          stream.cancel()
          try saveCheckpoint()
          return finished
        }
      }
      // End of the epoch (or of the iteration budget inside it).
      var test = try evaluate(model: model, loader: testLoader)
      var train = state.trainMetrics
      if let dataParallel {
        (test, train) = (try dataParallel.sum(test), try dataParallel.sum(train))
      }
      let metrics = EpochMetrics(
        epoch: state.epoch + 1, iteration: state.iteration, lr: lastRate,
        trainLoss: train.loss, trainTop1: train.top1,
        testLoss: test.loss, testTop1: test.top1, testTop5: test.top5,
        imagesPerSecond: Double(train.samples) / max(state.epochSeconds, 1e-9),
        seconds: state.epochSeconds)
      finished.append(metrics)
      progress.endEpoch(metrics)
      state.epoch += 1
      state.batchInEpoch = 0
      state.trainMetrics = ClassificationMetrics()
      state.epochSeconds = 0
      let writes = dataParallel?.isRoot ?? true
      if writes, let metricsURL {
        do {
          try appendLine(try JSONEncoder.sortedKeys.encode(metrics), to: metricsURL)
        } catch {
          throw TrainingError.outputFailed(
            "cannot append to \(metricsURL.path): \(OutputDirectory.reason(error))")
        }
      }
      if writes, let modelURL {
        try model.save(to: modelURL, metadata: state.configuration.model.metadata)
      }
      try saveCheckpoint()
    }
    return finished
  }

  /// Writes the checkpoint (atomically), if the run has an output directory.
  public func saveCheckpoint() throws {
    guard let url = checkpointURL else { return }
    var saved = state
    if let dataParallel {
      // Rank 0 writes; the epoch's metrics so far are those of every rank.
      saved.trainMetrics = try dataParallel.sum(state.trainMetrics)
      guard dataParallel.isRoot else { return }
    }
    state.optimizerSteps = optimizer.stepCount
    state.dropoutGenerators = [:]
    for (name, module) in model.namedModules() {
      if let dropout = module as? Dropout { state.dropoutGenerators[name] = dropout.generator }
    }
    saved.optimizerSteps = state.optimizerSteps
    saved.dropoutGenerators = state.dropoutGenerators
    try Checkpoint.write(model: model, optimizer: optimizer, state: saved, to: url)
  }

  private func appendLine(_ data: Data, to url: URL) throws {
    var line = data
    line.append(0x0A)
    if FileManager.default.fileExists(atPath: url.path) {
      let handle = try FileHandle(forWritingTo: url)
      defer { try? handle.close() }
      try handle.seekToEnd()
      try handle.write(contentsOf: line)
    } else {
      try line.write(to: url)
    }
  }
}

/// Top-1, top-5 and mean cross-entropy (no smoothing) of `model` over a loader, in eval mode.
public func evaluate(model: Module, loader: DataLoader) throws -> ClassificationMetrics {
  let wasTraining = model.isTraining
  model.eval()
  defer { model.setTraining(wasTraining) }
  var metrics = ClassificationMetrics()
  let stream = loader.batches(epoch: 0)
  try withoutGradients {
    while let batch = try stream.next() {
      let logits = try model(batch.images)
      let loss = try Tensor.crossEntropy(logits: logits, labels: batch.labels)
      metrics.add(loss: loss.item, logits: logits, labels: batch.labels)
    }
  }
  return metrics
}

extension JSONEncoder {
  /// An encoder with sorted keys, for stable JSON lines.
  public static var sortedKeys: JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return e
  }
}
