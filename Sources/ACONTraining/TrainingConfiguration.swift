import ACONModels
import Foundation

/// An error that stops training or evaluation with a message for the user.
public enum TrainingError: Error, CustomStringConvertible {
  /// A flag or setting is invalid.
  case invalidConfiguration(String)
  /// The loss became NaN or infinite; the last good checkpoint is kept.
  case nonFiniteLoss(iteration: Int, loss: Float)
  /// A checkpoint cannot be used.
  case badCheckpoint(String)
  /// The user interrupted the run (Ctrl-C); a checkpoint was saved.
  case interrupted(checkpoint: String)
  /// An output file or folder cannot be written (full disk, vanished or read-only folder).
  case outputFailed(String)

  public var description: String {
    switch self {
    case .invalidConfiguration(let m): return m
    case .nonFiniteLoss(let it, let loss):
      return
        "the training loss became \(loss) at iteration \(it); stopping (the last checkpoint is kept intact). Try a lower --lr."
    case .badCheckpoint(let m): return m
    case .interrupted(let path):
      return "interrupted; checkpoint saved to \(path) (continue with --resume)"
    case .outputFailed(let m): return m
    }
  }
}

/// Every setting of a training run; saved in checkpoints so that `--resume` continues the same run.
public struct TrainingConfiguration: Codable, Equatable, Sendable {
  public enum OptimizerKind: String, Codable, CaseIterable, Sendable { case sgd, adam, adamw }

  public var model: ModelConfiguration
  public var dataSet: DataSetName
  public var dataDirectory: String?
  public var epochs: Int = 1
  /// Stop after this many iterations in total instead of `epochs` full epochs (nil: all).
  public var iterations: Int?
  public var batchSize: Int = 128
  public var evalBatchSize: Int = 256
  public var learningRate: Float = 0.1
  public var schedule: LearningRateSchedule.Decay = .linear
  public var warmupIterations: Int = 0
  public var optimizer: OptimizerKind = .sgd
  public var momentum: Float = 0.9
  /// Applied to conv and linear weights only (the reference's grouping).
  public var weightDecay: Float = 4e-5
  public var labelSmoothing: Float = 0.1
  public var seed: UInt64 = 0
  /// Write a checkpoint every this many iterations (besides every epoch end); 0: epoch ends only.
  public var checkpointEvery: Int = 0
  /// Keep only the first N training / test samples (quick runs, tests).
  public var trainLimit: Int?
  public var testLimit: Int?
  public var augment: Bool = true
  /// How the network's weights start; nil (as in checkpoints written before the choice existed)
  /// is `.reference`.
  public var initialization: WeightInitialization?
  /// How the meta-ACON generators' weights start, when not as `initialization` (nil: as it).
  public var generatorInitialization: WeightInitialization?

  public init(model: ModelConfiguration, dataSet: DataSetName) {
    self.model = model
    self.dataSet = dataSet
  }

  /// Rejects settings that cannot train.
  public func validate() throws {
    func check(_ ok: Bool, _ message: String) throws {
      if !ok { throw TrainingError.invalidConfiguration(message) }
    }
    try check(epochs >= 1, "--epochs must be at least 1, not \(epochs)")
    try check(batchSize >= 1, "--batch-size must be at least 1, not \(batchSize)")
    try check(evalBatchSize >= 1, "the evaluation batch size must be at least 1")
    try check(
      learningRate.isFinite && learningRate > 0,
      "--lr must be a positive number, not \(learningRate)")
    try check(momentum >= 0 && momentum < 1, "--momentum must lie in [0, 1), not \(momentum)")
    try check(
      weightDecay.isFinite && weightDecay >= 0, "--weight-decay must be >= 0, not \(weightDecay)")
    try check(
      labelSmoothing >= 0 && labelSmoothing < 1,
      "--label-smoothing must lie in [0, 1), not \(labelSmoothing)")
    try check(warmupIterations >= 0, "--warmup must be >= 0")
    try check(checkpointEvery >= 0, "--checkpoint-every must be >= 0")
    if let iterations { try check(iterations >= 1, "--iterations must be at least 1") }
    if let trainLimit { try check(trainLimit >= 1, "--train-limit must be at least 1") }
    if let testLimit { try check(testLimit >= 1, "--test-limit must be at least 1") }
  }
}
