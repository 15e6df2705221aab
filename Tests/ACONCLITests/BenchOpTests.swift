import ACONKernels
import ACONModels
import Foundation
import Testing

@testable import ACONCLI

@Suite("bench-op")
struct BenchOpTests {
  @Test func measuresEveryOperationAndWritesJSON() throws {
    // One image and one run: the figures are meaningless, the plumbing is not.
    let command = try BenchOp.parse(["--batch", "1", "--runs", "1", "--warmup", "0", "--split"])
    let result = try command.measure()
    let names = result.rows.map(\.name)
    for expected in [
      "sgemm 512", "sgemm 2048", "conv3x3 64->64 pad 1 forward", "conv1x1 64->64 backward",
      "depthwise3x3 64 pad 1 forward+backward", "depthwise3x3 64 pad 1 weight gradient",
    ] {
      #expect(names.contains(expected), "\(names)")
    }
    for row in result.rows {
      #expect(row.milliseconds > 0 && row.milliseconds.isFinite, "\(row.name)")
      #expect(row.gflops ?? 1 > 0, "\(row.name)")
    }
    // Depthwise rows are also given in GB/s; the PyTorch figures sit on the rows they describe.
    let depthwise = try #require(result.rows.first { $0.name == "depthwise3x3 64 pad 1 forward" })
    #expect(depthwise.gigabytes != nil && depthwise.pytorch == 18)
    let object = command.jsonObject(result)
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    let parsed = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let forward = try #require(parsed["conv3x3_64_64_pad_1_forward"] as? [String: Any])
    #expect(forward["gflops"] is Double && forward["pytorch_gflops"] as? Double == 85)
  }

  @Test func timesGivenConvolutions() throws {
    let command = try BenchOp.parse([
      "--batch", "1", "--runs", "1", "--warmup", "0", "--conv", "8,16,9,3,2", "--conv",
      "8,8,5,3,1,8",
    ])
    let names = try command.measure().rows.map(\.name)
    #expect(names.contains("conv3x3/2 8->16 at 9 forward+backward"), "\(names)")
    #expect(names.contains("conv3x3 8->8 at 5 groups 8 backward"), "\(names)")
    #expect(!names.contains { $0.hasPrefix("conv1x1 64->64") })
    // The ResNet-50 census covers each of its 20 distinct convolutions, 53 layers in all.
    #expect(BenchOp.ConvSpec.resnet50.count == 20)
    #expect(BenchOp.ConvSpec.resnet50.reduce(0) { $0 + $1.count } == 53)
  }

  /// The census is ResNet-50 as the zoo builds it: the same (in, out, kernel, output size)
  /// convolutions, as many times each.
  @Test func resnet50CensusMatchesTheModel() throws {
    let model = try ModelZoo.make(ModelConfiguration(model: "resnet50", activation: "acon-c"))
    let layers = try ModelComplexity.measure(model, inputChannels: 3, inputSize: 224).layers
    let weights = Dictionary(
      uniqueKeysWithValues: model.namedParameters().map { ($0.0, $0.1.value.shape) })
    var fromModel: [String: Int] = [:]
    for layer in layers where layer.operation == "conv" {
      let w = try #require(weights[layer.name], "\(layer.name)")  // [out, in, k, k]
      fromModel["\(w[1]) \(w[0]) \(w[2]) \(layer.outputShape[2])", default: 0] += 1
    }
    var fromCensus: [String: Int] = [:]
    for c in BenchOp.ConvSpec.resnet50 {
      fromCensus["\(c.inputs) \(c.outputs) \(c.kernel) \(c.size / c.stride)", default: 0] += c.count
    }
    #expect(fromCensus == fromModel)
  }

  @Test func rejectsBadCounts() {
    #expect(throws: (any Error).self) { try BenchOp.parse(["--runs", "0"]).run() }
    #expect(throws: (any Error).self) { try BenchOp.parse(["--conv", "8,16,9"]).run() }
    #expect(throws: (any Error).self) { try BenchOp.parse(["--conv", "8,16,9,3,1,3"]).run() }
    // Winograd's tile is 2 or 4, nothing else.
    #expect(throws: (any Error).self) { try BenchOp.parse(["--winograd-tile", "3"]) }
    #expect(throws: (any Error).self) { try Bench.parse(["--winograd-tile", "six"]) }
  }

  @Test func winogradTileReachesTheKernels() throws {
    for tile in [2, 4] {
      let command = try BenchOp.parse(["--winograd-tile", String(tile)])
      let options = try command.kernelOptions()
      #expect(options.winogradTile == tile)
      KernelOptions.with(options) {
        let g = ConvGeometry(
          batch: 1, inChannels: 16, height: 24, width: 24, outChannels: 16, kernelHeight: 3,
          kernelWidth: 3, padding: 1)
        #expect(WinogradKernel.tileSize(g) == tile)
      }
    }
  }
}
