import ACONTensor
import Foundation
import Testing

/// `acon train --init reference|pytorch` through the real binary.
@Suite("acon train --init", .serialized)
struct InitOptionTests {
  /// A run of one iteration at a learning rate too small to move the weights: the saved model
  /// still shows how it started.
  static func startingWeights(
    _ initialization: String?, extra: [String] = []
  ) throws -> (SafeTensorsFile, SafeTensorsFile) {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let r = try runACON(
      [
        "train", "--model", "shufflenetv2-0.25x", "--activation", "meta-acon", "--iterations", "1",
        "--batch-size", "8", "--lr", "1e-30", "--train-limit", "16", "--test-limit", "16",
        "--out", out.path, "--quiet",
      ] + (initialization.map { ["--init", $0] } ?? []) + extra)
    #expect(r.status == 0, "\(r.stderr)")
    return (
      try SafeTensors.read(out.appendingPathComponent("model.safetensors")),
      try SafeTensors.read(out.appendingPathComponent("checkpoint.safetensors"))
    )
  }

  @Test func pytorchInitialisationReachesTheModelAndTheCheckpoint() throws {
    let (pytorch, pytorchCheckpoint) = try Self.startingWeights("pytorch")
    let (reference, referenceCheckpoint) = try Self.startingWeights(nil)
    // Stem conv, 1 input channel, 3x3: U(-1/3, 1/3) against the reference's N(0, 0.01).
    let stem = "first_conv.0.weight"
    let pytorchMax = try pytorch.tensor(stem).scalars.map { abs($0) }.max()!
    let referenceMax = try reference.tensor(stem).scalars.map { abs($0) }.max()!
    #expect(pytorchMax > 0.2 && pytorchMax <= 1 / 3 + 1e-6, "pytorch stem max \(pytorchMax)")
    #expect(referenceMax < 0.06, "reference stem max \(referenceMax)")
    // Batch norm bias: 0 against 1e-4 (one step at LR 1e-30 moves neither).
    #expect(try pytorch.tensor("first_conv.1.bias").scalars.allSatisfy { abs($0) < 1e-20 })
    #expect(try reference.tensor("first_conv.1.bias").scalars.allSatisfy { abs($0 - 1e-4) < 1e-9 })
    // The checkpoint's configuration records the choice, so --resume keeps it.
    #expect(
      pytorchCheckpoint.metadata.values.contains { $0.contains("\"initialization\":\"pytorch\"") })
    #expect(
      !referenceCheckpoint.metadata.values.contains {
        $0.contains("\"initialization\":\"pytorch\"")
      })
  }

  /// `--generator-init pytorch` under the reference start: the generators' batch norms start at
  /// bias 0, the rest of the network's at 1e-4, and the checkpoint records the split.
  @Test func generatorInitialisationReachesOnlyTheGenerators() throws {
    let (model, checkpoint) = try Self.startingWeights(nil, extra: ["--generator-init", "pytorch"])
    var seen = (generator: 0, rest: 0)
    for name in model.names
    where name.hasSuffix(".bias") && name.contains("bn") || name == "first_conv.1.bias" {
      let values = try model.tensor(name).scalars
      if name.contains(".bn1.") || name.contains(".bn2.") {
        #expect(values.allSatisfy { abs($0) < 1e-20 }, "\(name) not at PyTorch's 0")
        seen.generator += 1
      } else {
        #expect(values.allSatisfy { abs($0 - 1e-4) < 1e-9 }, "\(name) not at the reference's 1e-4")
        seen.rest += 1
      }
    }
    #expect(seen.generator > 0 && seen.rest > 0, "\(seen)")
    #expect(
      checkpoint.metadata.values.contains { $0.contains("\"generatorInitialization\":\"pytorch\"") }
    )
    let bad = try runACON(["train", "--generator-init", "zeros", "--iterations", "1"])
    #expect(bad.status != 0 && bad.stderr.contains("--generator-init"), "\(bad.stderr)")
  }

  @Test func unknownInitialisationIsRejected() throws {
    let r = try runACON(["train", "--init", "kaiming", "--iterations", "1"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("--init"), "stderr: \(r.stderr)")
    #expect(!r.stderr.contains("Fatal error"))
  }
}
