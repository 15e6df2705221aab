import ACONModels
import ACONTensor
import ACONTraining
import Foundation
import Testing

/// A checkpoint's metadata is outside input: the committed fuzz inputs of the `checkpoint` target
/// (fuzz/corpus/checkpoint, fuzz/regressions/checkpoint) replayed, and the states and model
/// configurations that no run can continue from refused with a message instead of a trap or an
/// unbounded allocation.
@Suite("Fuzz regressions: checkpoint metadata")
struct CheckpointFuzzRegressionTests {
  static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fuzz")

  static func inputs(_ kind: String) -> [URL] {
    let folder = fuzzRoot.appendingPathComponent(kind).appendingPathComponent("checkpoint")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.sorted().map { folder.appendingPathComponent($0) }
  }

  func message(_ body: () throws -> Void) -> String {
    do {
      try body()
      Issue.record("expected an error")
      return ""
    } catch {
      return "\(error)"
    }
  }

  /// A checkpoint file holding `state` as its metadata, and no tensors.
  func checkpointFile(_ state: String, extra: [String: String] = [:]) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-state-\(UUID().uuidString).safetensors")
    var metadata = extra
    metadata["acon.training_state"] = state
    try SafeTensors.write([SafeTensors.Entry]([]), metadata: metadata, to: url)
    return url
  }

  func stateJSON(_ change: (inout TrainingState) -> Void) throws -> String {
    var state = TrainingState(
      configuration: TrainingConfiguration(
        model: ModelConfiguration(model: "mobilenetv1-0.25", classes: 10, inputChannels: 1),
        dataSet: .mnist))
    change(&state)
    return String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
  }

  @Test func committedCheckpointInputs() throws {
    let seeds = Self.inputs("corpus")
    #expect(seeds.count >= 2)
    var states = 0
    for url in seeds {
      let bytes = try Data(contentsOf: url)
      let file = try SafeTensors.decode(bytes, path: url.path)
      if file.metadata["acon.training_state"] != nil {
        let (state, _) = try Checkpoint.readState(url)
        try state.validate()
        states += 1
      }
      if let model = ModelConfiguration(metadata: file.metadata) { try model.validate() }
    }
    #expect(states >= 2)
    for url in Self.inputs("regressions") {
      let text = message { _ = try Checkpoint.readState(url) }
      #expect(text.contains(url.path), "\(url.lastPathComponent): \(text)")
    }
  }

  @Test func statesNoRunCanContinueFromAreRefused() throws {
    let cases: [(String, (inout TrainingState) -> Void)] = [
      ("negative epoch, batch or iteration", { $0.batchInEpoch = -3 }),
      ("negative epoch, batch or iteration", { $0.iteration = Int.min }),
      ("negative optimizer step count", { $0.optimizerSteps = -1 }),
      ("--batch-size must be at least 1", { $0.configuration.batchSize = 0 }),
      ("class count must lie in", { $0.configuration.model.classes = 1 << 40 }),
      ("input channel count must lie in", { $0.configuration.model.inputChannels = -2 }),
      ("beyond the run's", { $0.epoch = 9 }),
    ]
    for (expected, change) in cases {
      let url = try checkpointFile(try stateJSON(change))
      defer { try? FileManager.default.removeItem(at: url) }
      let text = message { _ = try Checkpoint.readState(url) }
      #expect(text.contains(expected) && text.contains(url.path), "\(text)")
    }
    let garbage = try checkpointFile("{\"configuration\": 3}")
    defer { try? FileManager.default.removeItem(at: garbage) }
    #expect(message { _ = try Checkpoint.readState(garbage) }.contains("unreadable training state"))
  }

  @Test func weightsMetadataCannotAskForAHugeModel() {
    // A classifier of 2^40 classes would need terabytes; refused before building anything.
    let metadata = ModelConfiguration(model: "mobilenetv1-0.25", classes: 10).metadata
      .merging(["acon.classes": "1099511627776"]) { $1 }
    let configuration = ModelConfiguration(metadata: metadata)!
    #expect(
      message { _ = try ModelZoo.make(configuration) }.contains(
        "class count must lie in 1...1048576"))
    var channels = ModelConfiguration(model: "resnet18", classes: 10)
    channels.inputChannels = 1 << 30
    #expect(message { _ = try ModelZoo.make(channels) }.contains("input channel count must lie in"))
  }
}
