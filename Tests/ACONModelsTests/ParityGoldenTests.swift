import ACONNN
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// Checks that the model parity goldens (scripts/reference/make_parity_goldens.py) are complete
/// and consistent, with what can be checked before the Swift models exist: the state dict keys,
/// the loss and the classifier-bias gradient recomputed from the stored logits.
@Suite("Parity golden files")
struct ParityGoldenTests {
  static let tags = [
    ("shufflenetv2_0.5x_acon", 505), ("shufflenetv2_0.5x_meta", 986), ("tfnet_0.5", 636),
  ]

  @Test(arguments: tags)
  func weightsAreAStateDict(tag: String, keyCount: Int) throws {
    let weights = try Golden(named: "\(tag).weights", in: .module)
    #expect(weights.file.names.count == keyCount)
    // The Python writer orders tensors by dtype, then name; state_dict order is the model's.
    for name in ["first_conv.0.weight", "first_conv.1.running_var", "classifier.0.bias"] {
      #expect(weights.contains(name), "\(name)")
    }
    #expect(try weights.tensor("classifier.0.weight").shape == [10, 1024])
    for name in weights.file.names where name.hasSuffix("num_batches_tracked") {
      #expect(weights.file.dtypes[name] == .i64, "\(name)")
      #expect(try weights.tensor(name).shape == [], "\(name)")
      // Two warm-up passes ran before the snapshot.
      #expect(try weights.tensor(name).item == 2, "\(name)")
    }
    #expect(weights.metadata["tag"] == tag)
  }

  @Test(arguments: tags.map(\.0))
  func lossAndClassifierGradientFollowFromTheLogits(tag: String) throws {
    let io = try Golden(named: "\(tag).io", in: .module)
    #expect(try io.tensor("input").shape == [4, 3, 48, 48])
    let labels = try io.integers("labels")
    #expect(labels.count == 4 && labels.allSatisfy { (0..<10).contains($0) })
    #expect(try io.tensor("logits_eval").shape == [4, 10])
    #expect(io.metadata["label_smoothing"] == "0.1")

    let logits = Parameter(try io.tensor("logits_train"))
    let loss = try Tensor.crossEntropy(logits: logits.value, labels: labels, labelSmoothing: 0.1)
    #expect(io.mismatch(loss, "loss", relativeL2: 1e-6) == nil)
    #expect(io.mismatch(loss, "loss_f64", relativeL2: 1e-5) == nil)
    try loss.backward()
    // The classifier bias gradient is the batch sum of d loss / d logits.
    let dBias = try #require(logits.grad).sumRaw(toShape: [10])
    #expect(io.mismatch(dBias, "grad.classifier.0.bias", relativeL2: 1e-5) == nil)
    #expect(io.mismatch(dBias, "grad_f64.classifier.0.bias", relativeL2: 1e-5) == nil)
  }

  @Test(arguments: tags.map(\.0))
  func everyParameterHasItsGradient(tag: String) throws {
    let weights = try Golden(named: "\(tag).weights", in: .module)
    let io = try Golden(named: "\(tag).io", in: .module)
    let zero = Set(
      (io.metadata["zero_gradient_parameters"] ?? "").split(separator: ",").map(String.init))
    var checked = 0
    for name in weights.file.names {
      let value = try weights.tensor(name)
      if name.hasSuffix("running_mean") || name.hasSuffix("running_var") {
        // The training-mode pass moved every running statistic.
        #expect(try io.tensor("after." + name).scalars != value.scalars, "\(name)")
        continue
      }
      if name.hasSuffix("num_batches_tracked") { continue }
      #expect(io.contains("grad_norm_f64." + name), "\(name)")
      if zero.contains(name) {
        #expect(!io.contains("grad." + name))
        continue
      }
      for prefix in ["grad.", "grad_f64."] {
        let g = try io.tensor(prefix + name)
        #expect(g.shape.dropFirst() == value.shape.dropFirst(), "\(prefix)\(name)")
        #expect(g.rank == 0 || g.shape[0] <= value.shape[0], "\(prefix)\(name)")
      }
      checked += 1
    }
    #expect(checked > 100)
  }

  @Test func leadingRowsCompareTheStoredRows() throws {
    let io = try Golden(named: "shufflenetv2_0.5x_acon.io", in: .module)
    let stored = try io.tensor("grad.conv_last.0.weight")
    #expect(stored.shape[0] < 1024)
    // A full-size tensor whose leading rows are the stored ones, the rest garbage.
    let full = Tensor(shape: [1024] + stored.shape.dropFirst(), repeating: 7)
    full.mutableData.update(from: stored.data, count: stored.count)
    #expect(io.mismatch(full, "grad.conv_last.0.weight", relativeL2: 0, leadingRows: true) == nil)
    #expect(io.mismatch(full, "grad.conv_last.0.weight", relativeL2: 0) != nil)
  }

  @Test func gradientCheckNamesEveryProblem() throws {
    let golden = try ParityGolden(tag: "tfnet_0.5", in: .module)
    #expect(golden.labelSmoothing == 0.1)
    let logits = Parameter(try golden.io.tensor("logits_train"))
    let loss = try Tensor.crossEntropy(
      logits: logits.value, labels: try golden.labels(), labelSmoothing: golden.labelSmoothing)
    try loss.backward()
    let bias = Parameter(Tensor.zeros([10]))
    bias.grad = try #require(logits.grad).sumRaw(toShape: [10])
    #expect(golden.gradientMismatches([("classifier.0.bias", bias)], requireAll: false) == [])

    let wrong = Parameter(Tensor.zeros([10]))
    wrong.grad = bias.grad!.scaledRaw(1.01)
    let zeroBias = Parameter(Tensor.zeros([16]))
    zeroBias.grad = Tensor(shape: [16], repeating: 1)
    let misnamed = Parameter(Tensor.zeros([10]))
    misnamed.grad = bias.grad
    let problems = golden.gradientMismatches(
      [
        ("classifier.0.bias", wrong), ("first_conv.0.bias", zeroBias),
        ("classifier.bias", misnamed), ("conv_last.0.weight", Parameter(Tensor.zeros([1]))),
      ], requireAll: true)
    let text = problems.joined(separator: "\n")
    #expect(text.contains("grad_f64.classifier.0.bias: relative L2"), "\(text)")
    #expect(text.contains("first_conv.0.bias: true gradient is zero"), "\(text)")
    #expect(text.contains("classifier.bias: not a parameter"), "\(text)")
    #expect(text.contains("conv_last.0.weight: no gradient"), "\(text)")
    #expect(text.contains("features.0.branch_main.0.weight: missing from the model"), "\(text)")
  }

  @Test func runningStatisticsCompareByName() throws {
    let golden = try ParityGolden(tag: "tfnet_0.5", in: .module)
    let after = try golden.io.tensor("after.conv_last.1.running_var")
    #expect(golden.runningStatisticMismatches([("conv_last.1.running_var", after)]) == [])
    let off = golden.runningStatisticMismatches([("conv_last.1.running_var", after.scaledRaw(2))])
    #expect(off.count == 1 && off[0].contains("after.conv_last.1.running_var"))
  }
}
