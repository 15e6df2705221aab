import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import Foundation
import Testing

/// A process group of `size` ranks played by one process: this rank's values with the other
/// ranks' supplied by `others` (what they would contribute to an allgather or a sum).
final class ScriptedGroup: ProcessGroup {
  let rank = 0
  let size: Int
  var others: ([Double]) -> [[Double]]
  init(size: Int, others: @escaping ([Double]) -> [[Double]]) {
    self.size = size
    self.others = others
  }
  func broadcast(_ values: [Float], root: Int) throws -> [Float] { values }
  func broadcastBytes(_ bytes: [UInt8], root: Int) throws -> [UInt8] { bytes }
  func allreduceSum(_ values: [Double]) throws -> [Double] {
    ([values] + others(values)).reduce(into: [Double](repeating: 0, count: values.count)) {
      total, v in
      for i in v.indices { total[i] += v[i] }
    }
  }
  func startAllreduceSum(_ values: [Float]) throws -> any PendingReduction {
    Done(try allreduceSum(values.map(Double.init)).map(Float.init))
  }
  func allgather(_ values: [Double]) throws -> [[Double]] { [values] + others(values) }
  func abort(_ message: String, code: Int32) -> Never { fatalError(message) }

  final class Done: PendingReduction {
    let values: [Float]
    init(_ values: [Float]) { self.values = values }
    func progress() {}
    func wait() throws -> [Float] { values }
  }
}

@Suite("DataParallel")
struct DataParallelTests {
  /// Batch statistics combined from two halves of a batch are the whole batch's.
  @Test func combinedStatisticsEqualTheWholeBatch() throws {
    let x = Tensor(
      shape: [8, 3, 4, 4], values: (0..<384).map { Float(sin(Double($0) * 0.37)) * 2 + 0.5 })
    func statistics(_ t: Tensor) -> (count: Int, mean: [Float], variance: [Float]) {
      let (n, c, plane) = (t.shape[0], t.shape[1], t.shape[2] * t.shape[3])
      let v = t.scalars
      var mean = [Float](repeating: 0, count: c)
      var variance = [Float](repeating: 0, count: c)
      for ch in 0..<c {
        var values: [Double] = []
        for b in 0..<n { for i in 0..<plane { values.append(Double(v[(b * c + ch) * plane + i])) } }
        let m = values.reduce(0, +) / Double(values.count)
        mean[ch] = Float(m)
        variance[ch] = Float(values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count))
      }
      return (n * plane, mean, variance)
    }
    let first = try x.narrowBatch(start: 0, count: 3)
    let second = try x.narrowBatch(start: 3, count: 5)
    let s2 = statistics(second)
    let group = ScriptedGroup(size: 2) { _ in
      [[Double(s2.count)] + s2.mean.map(Double.init) + s2.variance.map(Double.init)]
    }
    let parallel = DataParallel(group: group)
    let s1 = statistics(first)
    let combined = parallel.combine(count: s1.count, mean: s1.mean, variance: s1.variance)
    let whole = statistics(x)
    #expect(combined.count == whole.count)
    for ch in 0..<3 {
      #expect(abs(combined.mean[ch] - whole.mean[ch]) < 1e-6)
      #expect(abs(combined.variance[ch] - whole.variance[ch]) < 1e-5 * whole.variance[ch])
    }
  }

  /// --verify-replicas stops the run when another rank's weights hash differently.
  @Test func verifyReplicasDetectsDivergedWeights() throws {
    let model = try ModelZoo.make(
      ModelConfiguration(model: "mobilenetv1-0.25", activation: "relu"), seed: 0)
    var options = DataParallelOptions()
    options.verifyReplicas = true
    let same = DataParallel(group: ScriptedGroup(size: 2) { [$0] }, options: options)
    try same.verifyReplicas(of: model, iteration: 1)
    let differing = DataParallel(
      group: ScriptedGroup(size: 3) { mine in [mine, [mine[0], mine[1] + 1]] }, options: options)
    #expect(throws: ProcessGroupError.self) {
      try differing.verifyReplicas(of: model, iteration: 7)
    }
    do {
      try differing.verifyReplicas(of: model, iteration: 7)
    } catch {
      #expect(
        "\(error)"
          == "the replicas' parameters differ after iteration 7: rank(s) 2 differ from rank 0")
    }
  }

  /// Gradients come back averaged over the ranks (here the other rank's gradient is this one's
  /// times 3, so the mean is twice it), the loss is the ranks' mean, and any rank's interrupt
  /// reaches every rank.
  @Test func gradientsAreAveragedInBuckets() throws {
    let model = try ModelZoo.make(
      ModelConfiguration(model: "mobilenetv1-0.25", activation: "relu"), seed: 0)
    var options = DataParallelOptions()
    options.bucketBytes = 16 << 10
    let group = ScriptedGroup(size: 2) { [$0] }
    let parallel = DataParallel(group: group, options: options)
    try parallel.start(model: model, settings: [:])
    let lastBucket = try #require(parallel.bucketSizes.last)
    group.others = { mine in
      // The last bucket ends with [loss, interrupt]: the other rank's loss is 3 times this
      // one's, and it asks to stop.
      var other = mine.map { $0 * 3 }
      if mine.count == lastBucket + 2 { other[mine.count - 1] = 1 }
      return [other]
    }
    #expect(parallel.bucketSizes.count > 3)
    #expect(parallel.bucketSizes.reduce(0, +) == model.parameterCount)
    var rng = RandomGenerator(seed: 1)
    let x = Tensor.randomNormal([2, 3, 32, 32], using: &rng)
    let loss = try Tensor.crossEntropy(logits: try model(x), labels: [1, 2])
    let reference = try ModelZoo.make(
      ModelConfiguration(model: "mobilenetv1-0.25", activation: "relu"), seed: 0)
    try Tensor.crossEntropy(logits: try reference(x), labels: [1, 2]).backward()
    let (mean, interrupt) = try parallel.backward(loss, localLoss: loss.item, interrupt: false)
    #expect(abs(mean - 2 * loss.item) < 1e-5 * loss.item)
    #expect(interrupt)
    for ((name, p), (_, r)) in zip(model.namedParameters(), reference.namedParameters()) {
      let (g, e) = (try #require(p.grad).scalars, try #require(r.grad).scalars)
      #expect(zip(g, e).allSatisfy { abs($0 - 2 * $1) <= 1e-6 * max(1, abs($1)) }, "\(name)")
    }
  }
}
