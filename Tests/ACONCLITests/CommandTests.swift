import ACONModels
import ACONNN
import ACONTensor
import Foundation
import Testing

/// Runs the built `acon` binary (scripts/test.sh builds it before the suite) and returns its
/// exit status, standard output and standard error.
/// The built `acon` binary, beside the test bundle or in the release build folder.
func aconBinary() throws -> URL {
  let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  var binary = directory.appendingPathComponent("acon")
  if !FileManager.default.fileExists(atPath: binary.path) {
    binary = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
      .appendingPathComponent(".build/release/acon")
  }
  guard FileManager.default.fileExists(atPath: binary.path) else {
    throw TensorError.invalidFile(
      path: binary.path, detail: "acon is not built: run `swift build -c release --product acon`")
  }
  return binary
}

func runACON(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
  let process = Process()
  process.executableURL = try aconBinary()
  process.arguments = arguments
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  let errData = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (
    process.terminationStatus, String(decoding: outData, as: UTF8.self),
    String(decoding: errData, as: UTF8.self)
  )
}

func temporaryDirectory() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "acon-cli-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

func lastJSONLine(_ text: String) throws -> [String: Any] {
  let line = try #require(text.split(separator: "\n").last)
  return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
}

@Suite(
  "acon command line", .serialized,
  .enabled(
    if: TestEnvironment.aconBuilt,
    "needs the acon binary: run `swift build -c release --product acon` first (scripts/test.sh does)"
  ))
struct CommandTests {
  @Test func infoPrintsParamsAndMACs() throws {
    let r = try runACON([
      "info", "--model", "shufflenetv2-0.5x", "--activation", "acon-c", "--json",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let object = try lastJSONLine(r.stdout)
    #expect(object["params"] as? Int == 1_380_176 || (object["params"] as? Int ?? 0) > 1_300_000)
    #expect(
      (object["macs"] as? Int ?? 0) > 40_000_000 && (object["macs"] as? Int ?? 0) < 42_000_000)
    let table = try runACON([
      "info", "--model", "resnet18", "--activation", "relu", "--input-size", "64", "--classes",
      "10",
    ])
    #expect(table.status == 0)
    #expect(table.stdout.contains("layer1.0.conv1.weight"))
  }

  /// A steady training loop takes no buffer from the system after its first steps: tensors come
  /// back from the pool, convolution workspaces (Winograd's, the unfolded columns, the wide 1x1
  /// weight gradient's) from the thread's scratch arena.
  @Test func benchTimedStepsTakeNothingFromTheSystem() throws {
    let r = try runACON([
      "bench", "--model", "resnet50", "--activation", "acon-c", "--batch-size", "2",
      "--input-size", "64", "--steps", "2", "--warmup", "2", "--json",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let json = try lastJSONLine(r.stdout)
    #expect(json["timed_system_allocations"] as? Int == 0, "\(json)")
  }

  /// `bench --budget` prints one Markdown row per op kind, convolutions by kernel path, with
  /// the work each must do, and a whole-step row whose FLOPs are the network's forward and
  /// backward matrix products.
  @Test func benchBudgetTabulatesOpsAgainstTheirFloors() throws {
    let r = try runACON([
      "bench", "--model", "shufflenetv2-0.5x", "--activation", "acon-c", "--batch-size", "4",
      "--input-size", "28", "--input-channels", "1", "--small-input", "--classes", "10",
      "--steps", "1", "--warmup", "1", "--budget",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("| ") }
    func row(_ name: String) -> [String]? {
      rows.first { $0.hasPrefix("| \(name) |") }.map {
        $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      }
    }
    #expect(r.stdout.contains("GFLOP/s and copy"))
    for name in [
      "conv 1x1", "conv depthwise", "batchNorm_acon(train)", Tensor.batchNormKernelRow,
    ] {
      let cells = try #require(row(name), "no row \(name) in \(r.stdout)")
      // name, forward ms, backward ms, GFLOP, MB, floor ms, measured / floor
      #expect(cells.count == 7, "\(cells)")
      #expect((Double(cells[5]) ?? 0) > 0, "\(cells)")
    }
    let oneByOne = try #require(row("conv 1x1"))
    #expect((Double(oneByOne[3]) ?? 0) > 0)
    #expect(row("conv2d") == nil, "conv2d is split by kernel path")
    // The folded batch norm's op is split alike: its convolution under "conv 1x1".
    #expect(!rows.contains { $0.hasPrefix("| batchNorm_conv1x1") }, "\(rows)")
    #expect(rows.contains { $0.contains("whole step") })
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func trainEvalAndResumeOnRealData() throws
  {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let common = [
      "--model", "mobilenetv1-0.25", "--activation", "acon-c", "--batch-size", "16",
      "--train-limit", "48", "--test-limit", "32", "--out", out.path, "--quiet",
    ]
    let train = try runACON(["train"] + common + ["--epochs", "1", "--json"])
    #expect(train.status == 0, "\(train.stderr)")
    #expect(train.stdout.contains("result: mobilenetv1-0.25 acon-c on fashion-mnist"))
    let metrics = try lastJSONLine(train.stdout)
    #expect(metrics["test_top1"] is Double)
    // A second epoch continues the run.
    let resumed = try runACON(["train"] + common + ["--epochs", "2", "--resume"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n")
    #expect(lines.count == 2)
    // eval reads the model configuration from the weights' metadata.
    let eval = try runACON([
      "eval", "--weights", out.appendingPathComponent("model.safetensors").path, "--limit", "32",
      "--json",
    ])
    #expect(eval.status == 0, "\(eval.stderr)")
    let result = try lastJSONLine(eval.stdout)
    for key in ["top1", "top5", "loss"] {
      #expect(result[key] is Double, "eval --json lacks \(key)")
    }
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func compareTabulatesSeedsAndReusesFinishedRuns() throws
  {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let arguments = [
      "compare", "--model", "mobilenetv1-0.25", "--activations", "relu,acon-c", "--seeds", "0,1",
      "--batch-size", "16", "--train-limit", "32", "--test-limit", "32", "--out", out.path,
      "--quiet", "--reuse",
    ]
    let first = try runACON(arguments)
    #expect(first.status == 0, "\(first.stderr)")
    let rows = first.stdout.split(separator: "\n").filter {
      $0.hasPrefix("| relu") || $0.hasPrefix("| acon-c")
    }
    #expect(rows.count == 2, "\(first.stdout)")
    #expect(first.stdout.contains("first 32 training images"))
    // Each row: name, parameters, mean ± std over the two seeds, change against relu, the runs.
    for row in rows {
      let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      #expect(cells.count == 5, "\(row)")
      #expect(cells[1].hasSuffix("M") && cells[2].contains("±"), "\(row)")
      #expect(cells[4].split(separator: ",").count == 2, "\(row)")
    }
    #expect(rows[0].contains("| +0.00 |"))
    let runs = ["relu-s0", "relu-s1", "acon-c-s0", "acon-c-s1"].map {
      out.appendingPathComponent("mobilenetv1-0.25-\($0)/metrics.jsonl")
    }
    let stamps = try runs.map {
      try FileManager.default.attributesOfItem(atPath: $0.path)[.modificationDate] as? Date
    }
    // Run again: every run is reused (nothing retrained), the table is the same.
    let second = try runACON(arguments)
    #expect(second.status == 0, "\(second.stderr)")
    #expect(second.stdout == first.stdout)
    let after = try runs.map {
      try FileManager.default.attributesOfItem(atPath: $0.path)[.modificationDate] as? Date
    }
    #expect(after == stamps)
    // Bad seeds are refused before anything trains.
    let bad = try runACON(["compare", "--seeds", "0,x", "--out", out.path])
    #expect(bad.status != 0 && bad.stderr.contains("'0,x' is invalid for '--seeds"))
  }

  @Test func forwardWritesLogitsAndGradients() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let config = ModelConfiguration(model: "tfnet-0.5", activation: "acon-frelu", classes: 5)
    let model = try ModelZoo.make(config, seed: 4)
    let weights = dir.appendingPathComponent("w.safetensors")
    try model.save(to: weights, metadata: config.metadata)
    var rng = RandomGenerator(seed: 9)
    let x = Tensor.randomUniform([2, 3, 32, 32], using: &rng)
    let labels = Tensor(shape: [2], values: [1, 3])
    let input = dir.appendingPathComponent("in.safetensors")
    try SafeTensors.write(
      [SafeTensors.Entry("input", x), SafeTensors.Entry("labels", labels, dtype: .i64)], to: input)
    let output = dir.appendingPathComponent("out.safetensors")
    let r = try runACON([
      "forward", "--weights", weights.path, "--input", input.path, "--output", output.path,
      "--train", "--grads",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let file = try SafeTensors.read(output)
    model.train()
    let logits = try model(x)
    let loss = try Tensor.crossEntropy(logits: logits, labels: [1, 3])
    try loss.backward()
    let written = try file.tensor("logits")
    #expect(written.scalars == logits.scalars)
    #expect(try file.tensor("loss").item == loss.item)
    for (name, p) in model.namedParameters() {
      #expect(try file.tensor("grad." + name).scalars == p.grad!.scalars, "\(name)")
    }
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func interruptSavesACompleteCheckpoint() throws
  {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let arguments = [
      "train", "--model", "mobilenetv1-0.25", "--batch-size", "8", "--train-limit", "20000",
      "--test-limit", "16", "--out", out.path, "--quiet",
    ]
    let process = Process()
    process.executableURL = try aconBinary()
    process.arguments = arguments
    let err = Pipe()
    process.standardError = err
    process.standardOutput = Pipe()
    try process.run()
    Thread.sleep(forTimeInterval: 2)
    kill(process.processIdentifier, SIGINT)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationReason == .exit, "acon died of a signal: \(stderr)")
    #expect(process.terminationStatus != 0)
    #expect(stderr.contains("interrupted"), "\(stderr)")
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    #expect(FileManager.default.fileExists(atPath: checkpoint.path))
    // The checkpoint is complete: it loads and knows where the run stopped.
    let file = try SafeTensors.read(checkpoint)
    let state = try #require(file.metadata["acon.training_state"])
    #expect(state.contains("\"batchInEpoch\""))
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func badInputGivesAClearErrorAndNonZeroExit() throws
  {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let corrupt = dir.appendingPathComponent("corrupt.safetensors")
    try Data([0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7B]).write(to: corrupt)
    let badIDX = dir.appendingPathComponent("idx")
    try FileManager.default.createDirectory(at: badIDX, withIntermediateDirectories: true)
    for name in [
      "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte",
    ] {
      try Data([0, 0, 9, 3, 0, 0, 0, 1]).write(to: badIDX.appendingPathComponent(name))
    }
    let cases: [([String], String)] = [
      (
        ["train", "--model", "resnet9000", "--out", dir.path],
        "'resnet9000' is invalid for '--model"
      ),
      (
        ["train", "--activation", "acon-z", "--out", dir.path],
        "'acon-z' is invalid for '--activation"
      ),
      (
        ["train", "--dataset", "imagenet-21k", "--out", dir.path],
        "'imagenet-21k' is invalid for '--dataset"
      ),
      (["train", "--lr", "-1", "--out", dir.path], "--lr"),
      (
        ["train", "--data", dir.appendingPathComponent("missing").path, "--out", dir.path],
        "does not exist"
      ),
      (["train", "--data", badIDX.path, "--out", dir.path], "magic"),
      (
        ["eval", "--weights", dir.appendingPathComponent("none.safetensors").path],
        "none.safetensors"
      ),
      (["eval", "--weights", corrupt.path], "corrupt.safetensors"),
      (["info", "--model", "mobilenetv9"], "'mobilenetv9' is invalid for '--model"),
      (["bench", "--mode", "fly"], "'fly' is invalid for '--mode"),
      (["train", "--schedule", "step", "--out", dir.path], "'step' is invalid for '--schedule"),
      (["train", "--optimizer", "lamb", "--out", dir.path], "'lamb' is invalid for '--optimizer"),
      (
        ["compare", "--activations", "relu,acon-z", "--out", dir.path], "invalid for '--activations"
      ),
      (["compare", "--seeds", "0,x", "--out", dir.path], "invalid for '--seeds"),
    ]
    for (arguments, message) in cases {
      let r = try runACON(arguments)
      #expect(r.status != 0, "\(arguments) exited 0")
      #expect(
        r.stderr.lowercased().contains(message.lowercased()), "\(arguments): stderr was \(r.stderr)"
      )
      #expect(!r.stderr.contains("Fatal error"), "\(arguments) crashed: \(r.stderr)")
    }
  }
}
