import ACONNN
import ACONTensor
import Foundation

/// Where a run stands: everything besides the tensors that an exact resume needs.
public struct TrainingState: Codable, Equatable, Sendable {
  public var configuration: TrainingConfiguration
  /// The epoch being trained (0-based).
  public var epoch = 0
  /// The next batch of `epoch` to train.
  public var batchInEpoch = 0
  /// Iterations completed in total.
  public var iteration = 0
  /// Metrics of the epoch so far.
  public var trainMetrics = ClassificationMetrics()
  /// Training seconds spent in the epoch so far (for images per second).
  public var epochSeconds = 0.0
  /// State of every dropout generator, by module name.
  public var dropoutGenerators: [String: RandomGenerator] = [:]
  /// The optimizer's step count.
  public var optimizerSteps = 0
  /// How many data-parallel replicas ran the run (nil in checkpoints from before there were
  /// any: 1); `configuration.batchSize` is per replica.
  public var worldSize: Int?

  public init(configuration: TrainingConfiguration) { self.configuration = configuration }

  /// Rejects a state no run can continue from (negative counters, a position beyond the end,
  /// settings that do not validate): a checkpoint's metadata is outside input like any file.
  public func validate() throws {
    func check(_ ok: Bool, _ what: String) throws {
      if !ok { throw TrainingError.badCheckpoint("training state: \(what)") }
    }
    try check(
      epoch >= 0 && batchInEpoch >= 0 && iteration >= 0, "negative epoch, batch or iteration")
    try check(optimizerSteps >= 0, "negative optimizer step count \(optimizerSteps)")
    try check(epochSeconds.isFinite && epochSeconds >= 0, "epoch time \(epochSeconds)")
    try check(trainMetrics.samples >= 0, "negative sample count")
    do {
      try configuration.validate()
      try configuration.model.validate()
    } catch {
      throw TrainingError.badCheckpoint("training state: \(error)")
    }
    try check(
      epoch <= configuration.epochs, "epoch \(epoch) is beyond the run's \(configuration.epochs)")
  }
}

/// The training checkpoint: one safetensors file with the model (`model.<name>`), the optimizer
/// state (`optimizer.<name>`) and the `TrainingState` as JSON metadata. Written atomically
/// (temporary file, then rename), so a crash never leaves a half-written checkpoint.
public enum Checkpoint {
  static let stateKey = "acon.training_state"

  /// Writes a checkpoint of `model`, `optimizer` and `state` to `url`.
  public static func write(
    model: Module, optimizer: Optimizer, state: TrainingState, to url: URL
  ) throws {
    var entries: [SafeTensors.Entry] = []
    for entry in model.stateEntries() {
      var dtype = SafeTensorsDType.f32
      if case .buffer(_, let b) = entry, b.storedAsInteger { dtype = .i64 }
      entries.append(SafeTensors.Entry("model." + entry.name, entry.value, dtype: dtype))
    }
    for (name, t) in optimizer.stateTensors() {
      entries.append(SafeTensors.Entry("optimizer." + name, t))
    }
    let json = try JSONEncoder().encode(state)
    var metadata = state.configuration.model.metadata
    metadata[stateKey] = String(decoding: json, as: UTF8.self)
    try SafeTensors.write(entries, metadata: metadata, to: url)
  }

  /// Reads the state stored in a checkpoint without loading its tensors into a model.
  public static func readState(_ url: URL) throws -> (TrainingState, SafeTensorsFile) {
    let file = try SafeTensors.read(url)
    guard let json = file.metadata[stateKey] else {
      throw TrainingError.badCheckpoint(
        "\(url.path) is not a training checkpoint (no \(stateKey) metadata)")
    }
    let state: TrainingState
    do {
      state = try JSONDecoder().decode(TrainingState.self, from: Data(json.utf8))
    } catch {
      throw TrainingError.badCheckpoint("\(url.path): unreadable training state: \(error)")
    }
    do {
      try state.validate()
    } catch let error as TrainingError {
      throw TrainingError.badCheckpoint("\(url.path): \(error)")
    }
    return (state, file)
  }

  /// Loads model and optimizer tensors from a checkpoint file read by `readState`.
  public static func restore(_ file: SafeTensorsFile, model: Module, optimizer: Optimizer) throws {
    var modelTensors: [String: Tensor] = [:]
    var optimizerTensors: [String: Tensor] = [:]
    for (name, t) in file.tensors {
      if name.hasPrefix("model.") {
        modelTensors[String(name.dropFirst(6))] = t
      } else if name.hasPrefix("optimizer.") {
        optimizerTensors[String(name.dropFirst(10))] = t
      }
    }
    try model.loadStateDict(modelTensors, strict: true)
    try optimizer.loadState(optimizerTensors)
  }
}
