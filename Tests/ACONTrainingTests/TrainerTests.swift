import ACONData
import ACONModels
import ACONNN
import ACONTensor
import ACONTestSupport
import ACONTraining
import Foundation
import Testing

/// End-to-end training on a slice of the real Fashion-MNIST (Debian's dataset-fashion-mnist,
/// installed by scripts/setup.sh).
@Suite(
  "Trainer", .serialized,
  .enabled(
    if: TestEnvironment.fashionMNISTInstalled,
    "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
  ))
struct TrainerTests {
  /// A small, quick run: a narrow ResNet-free model keeps the suite fast.
  func configuration(iterations: Int? = nil) -> TrainingConfiguration {
    var c = TrainingConfiguration(
      model: ModelConfiguration(model: "mobilenetv1-0.25", activation: "acon-c"),
      dataSet: .fashionMNIST)
    c.batchSize = 16
    c.evalBatchSize = 64
    c.trainLimit = 96
    c.testLimit = 64
    c.epochs = 2
    c.iterations = iterations
    c.learningRate = 0.05
    c.seed = 7
    return c
  }

  func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-trainer-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  @Test func trainsAndWritesMetricsWeightsAndCheckpoint() throws {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let trainer = try Trainer(
      configuration: configuration(), outputDirectory: out, resume: false,
      progress: ProgressReporter(enabled: false))
    var losses: [Float] = []
    trainer.onIteration = { _, loss in losses.append(loss) }
    let metrics = try trainer.run()
    #expect(metrics.count == 2)
    #expect(losses.count == 12)
    #expect(losses.allSatisfy { $0.isFinite })
    // metrics.jsonl: one object per epoch with the documented keys.
    let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n")
    #expect(lines.count == 2)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    for key in [
      "epoch", "iteration", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
      "images_per_second", "seconds",
    ] {
      #expect(first[key] != nil, "metrics.jsonl lacks \(key)")
    }
    let top1 = first["test_top1"] as! Double
    #expect(top1 >= 0 && top1 <= 1)
    // The weights file rebuilds the model from its own metadata.
    let file = try SafeTensors.read(out.appendingPathComponent("model.safetensors"))
    let config = try #require(ModelConfiguration(metadata: file.metadata))
    #expect(config.model == "mobilenetv1-0.25")
    #expect(config.inputChannels == 1)
    let rebuilt = try ModelZoo.make(config)
    try rebuilt.loadStateDict(file.tensors)
    #expect(
      FileManager.default.fileExists(
        atPath: out.appendingPathComponent("checkpoint.safetensors").path))
  }

  @Test func resumedRunMatchesUninterruptedRun() throws {
    let a = temporaryDirectory()
    let b = temporaryDirectory()
    defer {
      try? FileManager.default.removeItem(at: a)
      try? FileManager.default.removeItem(at: b)
    }
    let full = try Trainer(
      configuration: configuration(), outputDirectory: a, resume: false,
      progress: ProgressReporter(enabled: false))
    var fullLosses: [Float] = []
    full.onIteration = { _, loss in fullLosses.append(loss) }
    let fullMetrics = try full.run()

    // Interrupted mid-epoch 1 (iteration 4 of 6), then resumed in a new trainer.
    let first = try Trainer(
      configuration: configuration(), outputDirectory: b, resume: false,
      progress: ProgressReporter(enabled: false))
    var resumedLosses: [Float] = []
    first.onIteration = { _, loss in resumedLosses.append(loss) }
    first.stopAfterIteration = 4
    try first.run()
    #expect(resumedLosses.count == 4)
    let second = try Trainer(
      configuration: configuration(), outputDirectory: b, resume: true,
      progress: ProgressReporter(enabled: false))
    second.onIteration = { _, loss in resumedLosses.append(loss) }
    let resumedMetrics = try second.run()
    #expect(resumedLosses == fullLosses)
    #expect(
      resumedMetrics
        == Array(fullMetrics.suffix(resumedMetrics.count)).map { m in
          var m = m
          m.seconds = resumedMetrics.first { $0.epoch == m.epoch }!.seconds
          m.imagesPerSecond = resumedMetrics.first { $0.epoch == m.epoch }!.imagesPerSecond
          return m
        })
  }

  @Test func nonFiniteLossStopsAndKeepsTheCheckpoint() throws {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    var c = configuration()
    c.checkpointEvery = 1
    let trainer = try Trainer(
      configuration: c, outputDirectory: out, resume: false,
      progress: ProgressReporter(enabled: false))
    trainer.stopAfterIteration = 2
    try trainer.run()
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    let before = try Data(contentsOf: checkpoint)
    // Poison a weight: the next loss is NaN.
    let resumed = try Trainer(
      configuration: c, outputDirectory: out, resume: true,
      progress: ProgressReporter(enabled: false))
    resumed.model.parameters[0].update { p, n in for i in 0..<n { p[i] = .nan } }
    #expect {
      try resumed.run()
    } throws: { error in
      guard case TrainingError.nonFiniteLoss(let iteration, _) = error else { return false }
      return iteration == 3
    }
    #expect(try Data(contentsOf: checkpoint) == before)
  }

  @Test func badConfigurationsAreRejected() throws {
    var c = configuration()
    c.learningRate = -1
    #expect(throws: TrainingError.self) { try c.validate() }
    c = configuration()
    c.batchSize = 0
    #expect(throws: TrainingError.self) { try c.validate() }
    c = configuration()
    c.model.model = "resnet9000"
    #expect(throws: (any Error).self) {
      _ = try Trainer(configuration: c, outputDirectory: nil, resume: false)
    }
    c = configuration()
    c.model.activation = "acon-z"
    #expect(throws: (any Error).self) {
      _ = try Trainer(configuration: c, outputDirectory: nil, resume: false)
    }
    c = configuration()
    c.dataDirectory = "/nonexistent/fashion"
    #expect(throws: TrainingError.self) {
      _ = try Trainer(configuration: c, outputDirectory: nil, resume: false)
    }
    #expect(throws: TrainingError.self) { try DataSetName.parse("imagenet-21k") }
    #expect(throws: TrainingError.self) {
      _ = try Trainer(
        configuration: configuration(), outputDirectory: temporaryDirectory(), resume: true)
    }
  }
}
