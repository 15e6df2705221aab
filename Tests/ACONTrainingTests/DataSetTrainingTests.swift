import ACONData
import ACONModels
import ACONTensor
import ACONTraining
import Foundation
import Testing

/// End-to-end training on tiny generated CIFAR-10, CIFAR-100 and image-folder data sets, so
/// that every data set name of `acon train` runs through the real loader, model and trainer.
@Suite("Training on generated data sets", .serialized)
struct DataSetTrainingTests {
  func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-data-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  /// `records` CIFAR records: label byte(s) then 3072 pixel bytes (R plane, G plane, B plane).
  func writeCIFAR(_ url: URL, records: Int, labelBytes: Int, classes: Int, seed: UInt64) throws {
    var rng = RandomGenerator(seed: seed)
    var bytes: [UInt8] = []
    for i in 0..<records {
      if labelBytes == 2 { bytes.append(UInt8(i % 20)) }
      bytes.append(UInt8(i % classes))
      for _ in 0..<3072 { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
    }
    try Data(bytes).write(to: url)
  }

  func train(_ dataSet: DataSetName, directory: URL, model: String = "resnet18") throws
    -> [EpochMetrics]
  {
    var c = TrainingConfiguration(
      model: ModelConfiguration(model: model, activation: "acon-c"), dataSet: dataSet)
    c.dataDirectory = directory.path
    c.batchSize = 4
    c.evalBatchSize = 4
    c.iterations = 2
    c.learningRate = 0.01
    let trainer = try Trainer(
      configuration: c, outputDirectory: nil, resume: false,
      progress: ProgressReporter(enabled: false))
    return try trainer.run()
  }

  @Test func cifar10AndCifar100() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    for i in 1...5 {
      try writeCIFAR(
        dir.appendingPathComponent("data_batch_\(i).bin"), records: 2, labelBytes: 1, classes: 10,
        seed: UInt64(i))
    }
    try writeCIFAR(
      dir.appendingPathComponent("test_batch.bin"), records: 4, labelBytes: 1, classes: 10, seed: 9)
    let m10 = try train(.cifar10, directory: dir, model: "mobilenetv1-0.25")
    #expect(m10.count == 1 && m10[0].trainLoss.isFinite && m10[0].iteration == 2)
    let dir100 = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir100) }
    try writeCIFAR(
      dir100.appendingPathComponent("train.bin"), records: 8, labelBytes: 2, classes: 100, seed: 3)
    try writeCIFAR(
      dir100.appendingPathComponent("test.bin"), records: 4, labelBytes: 2, classes: 100, seed: 4)
    let m100 = try train(.cifar100, directory: dir100, model: "mobilenetv1-0.25")
    #expect(m100[0].testLoss.isFinite)
    // A truncated record is a clear error, not a crash.
    try Data(repeating: 1, count: 3000).write(to: dir100.appendingPathComponent("test.bin"))
    #expect(throws: (any Error).self) { _ = try train(.cifar100, directory: dir100) }
  }

  @Test func imageFolderWithReferenceTransforms() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var rng = RandomGenerator(seed: 5)
    for split in ["train", "val"] {
      for cls in ["cat", "dog"] {
        let folder = dir.appendingPathComponent(split).appendingPathComponent(cls)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for k in 0..<2 {
          let (w, h) = (40 + 8 * k, 36)
          let pixels = (0..<(w * h * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
          if k == 0 {
            try ImageCodec.writePNG(
              pixels: pixels, width: w, height: h, channels: 3,
              to: folder.appendingPathComponent("\(k).png").path)
          } else {
            let jpeg = try ImageCodec.encodeJPEG(pixels: pixels, width: w, height: h, channels: 3)
            try Data(jpeg).write(to: folder.appendingPathComponent("\(k).jpg"))
          }
        }
      }
    }
    let metrics = try train(.imageFolder, directory: dir, model: "shufflenetv2-0.5x")
    #expect(metrics.count == 1 && metrics[0].testTop1 >= 0)
    // An undecodable image names the file.
    try Data("not an image".utf8).write(to: dir.appendingPathComponent("val/dog/broken.jpg"))
    do {
      _ = try train(.imageFolder, directory: dir, model: "shufflenetv2-0.5x")
      Issue.record("a corrupt image was accepted")
    } catch {
      #expect("\(error)".contains("broken.jpg"), "\(error)")
    }
  }
}
