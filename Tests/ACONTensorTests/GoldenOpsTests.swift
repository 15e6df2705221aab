import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// Our ops against PyTorch: values and gradients from scripts/golden/basic_ops.py.
///
/// Each gradient is that of `sum(out * proj)` with the stored projection, as the script does.
@Suite("Golden ops")
struct GoldenOpsTests {
  let golden: Golden

  init() throws { golden = try Golden(named: "basic_ops", in: .module) }

  /// Runs `body` on parameters holding the golden inputs `inputs`, checks the output against
  /// `<op>.out` and each input's gradient against `<op>.<gradName>`.
  func check(
    _ op: String, inputs: [String], grads: [String], tolerance: Double = 1e-5,
    _ body: ([Tensor]) throws -> Tensor
  ) throws {
    let params = try inputs.map { Parameter(try golden.tensor("\(op).\($0)")) }
    let out = try body(params.map(\.value))
    #expect(golden.mismatch(out, "\(op).out", relativeL2: tolerance) == nil)
    try (out * golden.tensor("\(op).proj")).sum().backward()
    for (p, g) in zip(params, grads) {
      let grad = try #require(p.grad, "\(op): no gradient for \(g)")
      #expect(golden.mismatch(grad, "\(op).\(g)", relativeL2: tolerance) == nil)
    }
  }

  @Test func metadataNamesTheScript() {
    #expect(golden.metadata["script"] == "scripts/golden/basic_ops.py")
  }

  @Test func linear() throws {
    try check(
      "linear", inputs: ["x", "weight", "bias"], grads: ["grad_x", "grad_weight", "grad_bias"]
    ) {
      try Tensor.linear($0[0], weight: $0[1], bias: $0[2])
    }
  }

  @Test func broadcastAdd() throws {
    try check("add", inputs: ["a", "b"], grads: ["grad_a", "grad_b"]) { try $0[0] + $0[1] }
  }

  @Test func broadcastMultiply() throws {
    try check("multiply", inputs: ["a", "b"], grads: ["grad_a", "grad_b"]) { try $0[0] * $0[1] }
  }

  @Test func relu() throws {
    try check("relu", inputs: ["x"], grads: ["grad_x"]) { $0[0].relu() }
  }

  @Test func sigmoid() throws {
    try check("sigmoid", inputs: ["x"], grads: ["grad_x"]) { $0[0].sigmoid() }
  }

  @Test(arguments: [("ce_ls", Float(0.1)), ("ce", 0), ("ce_large", 0.1)])
  func crossEntropy(name: String, smoothing: Float) throws {
    let labels = try golden.integers("ce.labels")
    let p = Parameter(try golden.tensor("\(name).logits"))
    let loss = try Tensor.crossEntropy(logits: p.value, labels: labels, labelSmoothing: smoothing)
    #expect(golden.mismatch(loss, "\(name).loss", relativeL2: 1e-6) == nil)
    #expect(golden.mismatch(loss, "\(name).loss_f64", relativeL2: 1e-6) == nil)
    try loss.backward()
    #expect(golden.mismatch(try #require(p.grad), "\(name).grad_logits", relativeL2: 1e-5) == nil)
  }

  @Test func channelSplitByParity() throws {
    let p = Parameter(try golden.tensor("split.x"))
    let (even, odd) = try p.value.splitChannelsByParity()
    // A copy of the data: exact.
    #expect(golden.mismatch(even, "split.even", relativeL2: 0, maxAbs: 0) == nil)
    #expect(golden.mismatch(odd, "split.odd", relativeL2: 0, maxAbs: 0) == nil)
    let loss =
      try (even * golden.tensor("split.proj_even")).sum()
      + (odd * golden.tensor("split.proj_odd")).sum()
    try loss.backward()
    #expect(golden.mismatch(try #require(p.grad), "split.grad_x", relativeL2: 0, maxAbs: 0) == nil)
  }

  @Test func comparisonReportsNamesAndErrors() throws {
    let expected = try golden.tensor("relu.out")
    let off = expected.adding(0.5)
    let message = try #require(golden.mismatch(off, "relu.out", relativeL2: 1e-3))
    #expect(message.contains("relu.out"))
    #expect(message.contains("max abs 5.000e-01"))
    #expect(golden.mismatch(Tensor.zeros([2]), "relu.out")!.contains("shape [2]"))
    #expect(golden.mismatch(expected, "no.such")!.contains("no tensor named \"no.such\""))
    let nan = expected.copy()
    nan.mutableData[0] = .nan
    #expect(golden.mismatch(nan, "relu.out", relativeL2: 1)!.contains("non-finite"))
  }
}
