import ACONInterop
import ACONModels
import ACONNN
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// `.pth` files through the real `acon` binary: eval, forward, convert, train --init-weights,
/// and the bad inputs, each a message on stderr and a non-zero exit.
@Suite(
  "acon with PyTorch checkpoints", .serialized,
  .enabled(
    if: TestEnvironment.aconBuilt,
    "needs the acon binary: run `swift build -c release --product acon` first (scripts/test.sh does)"
  ),
  .enabled(
    if: TestEnvironment.fashionMNISTInstalled,
    "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
  ))
struct CheckpointCommandTests {
  let configuration = ModelConfiguration(
    model: "mobilenetv1-0.25", activation: "acon-c", classes: 10, inputChannels: 1, smallInput: true
  )

  /// Writes a model of `classes` classes as a `.pth` (DataParallel keys) and returns it.
  func writeCheckpoint(_ url: URL, classes: Int, metadata: Bool) throws -> Module {
    var c = configuration
    c.classes = classes
    let model = try ModelZoo.make(c, seed: 3)
    let entries = model.stateEntries().map { entry -> SafeTensors.Entry in
      if case .buffer(_, let b) = entry, b.storedAsInteger {
        return SafeTensors.Entry("module." + entry.name, entry.value, dtype: .i64)
      }
      return SafeTensors.Entry("module." + entry.name, entry.value)
    }
    try PyTorchCheckpoint.write(entries, metadata: metadata ? c.metadata : [:], to: url)
    return model
  }

  @Test func evalForwardAndConvertReadPth() throws {
    let dir = scratchDirectory()
    let pth = dir.appendingPathComponent("m.pth")
    let model = try writeCheckpoint(pth, classes: 10, metadata: true)
    let eval = try runACON(["eval", "--weights", pth.path, "--limit", "32", "--json"])
    #expect(eval.status == 0, "\(eval.stderr)")
    #expect(eval.stdout.contains("\"top1\""))

    let converted = dir.appendingPathComponent("m.safetensors")
    let convert = try runACON(["convert", pth.path, converted.path])
    #expect(convert.status == 0, "\(convert.stderr)")
    let file = try SafeTensors.read(converted)
    #expect(file.names == model.stateDict().map(\.0), "the prefix is dropped, the order kept")
    #expect(file.dtypes["features.0.1.num_batches_tracked"] == .i64)
    #expect(ModelConfiguration(metadata: file.metadata) == configuration)

    var x = RandomGenerator(seed: 9)
    let input = Tensor.randomNormal([2, 1, 28, 28], using: &x)
    let inputURL = dir.appendingPathComponent("x.safetensors")
    try SafeTensors.write([("input", input)], to: inputURL)
    var logits: [[Float]] = []
    for weights in [pth, converted] {
      let out = dir.appendingPathComponent("y-\(weights.lastPathComponent).safetensors")
      let r = try runACON([
        "forward", "--weights", weights.path, "--input", inputURL.path, "--output", out.path,
      ])
      #expect(r.status == 0, "\(r.stderr)")
      logits.append(try SafeTensors.read(out).tensor("logits").scalars)
    }
    model.eval()
    let direct = try withoutGradients { try model(input) }.scalars
    #expect(logits[0] == direct && logits[1] == direct)

    let plot = try runACON([
      "plot", "beta", "--weights", pth.path, "--output",
      dir.appendingPathComponent("beta.svg").path,
    ])
    #expect(plot.status == 0, "\(plot.stderr)")
    #expect(
      plot.stdout.contains("features.1.2"), "layer names without the module. prefix: \(plot.stdout)"
    )

    // And back: safetensors to .pth, read again.
    let back = dir.appendingPathComponent("back.pth.tar")
    #expect(try runACON(["convert", converted.path, back.path]).status == 0)
    let again = try PyTorchCheckpoint.read(back)
    #expect(again.names == file.names && again.metadata["acon.model"] == "mobilenetv1-0.25")
  }

  @Test func trainStartsFromInitWeights() throws {
    let dir = scratchDirectory()
    let pth = dir.appendingPathComponent("init.pth")
    let model = try writeCheckpoint(pth, classes: 10, metadata: false)
    let common = [
      "train", "--model", "mobilenetv1-0.25", "--activation", "acon-c", "--batch-size", "8",
      "--train-limit", "16",
      "--test-limit", "16", "--iterations", "1", "--lr", "1e-30", "--schedule", "constant",
      "--quiet",
    ]
    let run = dir.appendingPathComponent("run")
    let r = try runACON(common + ["--init-weights", pth.path, "--out", run.path])
    #expect(r.status == 0, "\(r.stderr)")
    // With a learning rate of 1e-30 the parameters are still the initial weights (a fresh
    // initialisation, seed 0, would be far from them).
    let trained = try SafeTensors.read(run.appendingPathComponent("model.safetensors"))
    for (name, p) in model.namedParameters() {
      let got = try #require(trained.tensors[name], "\(name)").scalars
      let close = zip(got, p.value.scalars).allSatisfy { abs($0 - $1) <= 1e-20 + 1e-6 * abs($1) }
      #expect(close, "\(name)")
    }

    let five = dir.appendingPathComponent("five.pth")
    _ = try writeCheckpoint(five, classes: 5, metadata: false)
    let refused = try runACON(
      common + ["--init-weights", five.path, "--out", dir.appendingPathComponent("r2").path])
    #expect(refused.status != 0)
    #expect(
      refused.stderr.contains("classifier.weight: expected shape [10, 256], found [5, 256]"),
      "\(refused.stderr)")
    #expect(refused.stderr.contains("--reset-classifier"))
    let reset = try runACON(
      common + [
        "--init-weights", five.path, "--reset-classifier", "--out",
        dir.appendingPathComponent("r3").path,
      ])
    #expect(reset.status == 0, "\(reset.stderr)")
  }

  @Test func badCheckpointsAreClearErrors() throws {
    let dir = scratchDirectory()
    let truncated = dir.appendingPathComponent("cut.pth")
    let bytes = try fixtureBytes("dataparallel.pth")
    try Data(bytes[..<(bytes.count / 2)]).write(to: truncated)
    let cases: [(String, String)] = [
      (try fixture("malicious_zip.pth").path, "refusing the global posix.system"),
      (try fixture("malicious_legacy.pth").path, "refusing the global __builtin__.eval"),
      (try fixture("storage_mismatch.pth").path, "storage 0 of tensor 0.weight holds 212 bytes"),
      (truncated.path, "not a valid zip archive"),
      (try fixture("small_zip.pth").path, "does not fit mobilenetv1-0.25"),
    ]
    for (path, message) in cases {
      let r = try runACON([
        "eval", "--weights", path, "--model", "mobilenetv1-0.25", "--activation", "acon-c",
        "--limit", "8",
      ])
      #expect(r.status != 0, "\(path)")
      #expect(r.stderr.contains(message), "\(path): \(r.stderr)")
      #expect(!r.stderr.contains("Fatal error"), "\(path)")
    }
    let convert = try runACON([
      "convert", try fixture("malicious_zip.pth").path,
      dir.appendingPathComponent("x.safetensors").path,
    ])
    #expect(convert.status != 0 && convert.stderr.contains("refusing"))
  }
}
