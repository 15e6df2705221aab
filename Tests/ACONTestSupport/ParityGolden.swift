import ACONTensor
import Foundation

/// One whole-model parity golden from scripts/reference/make_parity_goldens.py: the weights file
/// (a PyTorch state dict) and the io file (input, labels, logits, loss, gradients, running
/// statistics after the training-mode pass), with checks that name every tensor that differs.
///
/// Typical use, with the model built and loaded from ``weightsURL``:
///
///     let golden = try ParityGolden(tag: "tfnet_0.5", in: .module)
///     try model.load(from: golden.weightsURL, strict: true)
///     ... eval logits vs "logits_eval_f64", train logits, loss, backward ...
///     #expect(golden.gradientMismatches(model.namedParameters()) == [])
public struct ParityGolden {
  public let tag: String
  /// `Golden/<tag>.weights.safetensors`, for `Module.load(from:strict:)`.
  public let weightsURL: URL
  /// `Golden/<tag>.io.safetensors`.
  public let io: Golden

  public init(tag: String, in bundle: Bundle) throws {
    self.tag = tag
    guard
      let url = bundle.url(
        forResource: "\(tag).weights", withExtension: "safetensors", subdirectory: "Golden")
    else {
      throw TensorError.invalidFile(
        path: "Golden/\(tag).weights.safetensors", detail: "not found in \(bundle.bundlePath)")
    }
    weightsURL = url
    io = try Golden(named: "\(tag).io", in: bundle)
  }

  /// The input batch, `[4, 3, 48, 48]`.
  public func input() throws -> Tensor { try io.tensor("input") }
  /// The class labels of the batch.
  public func labels() throws -> [Int] { try io.integers("labels") }
  /// The label smoothing the loss used.
  public var labelSmoothing: Float { Float(io.metadata["label_smoothing"] ?? "") ?? 0 }

  /// Parameters whose true gradient is zero (a bias right before a training-mode BN).
  public var zeroGradientParameters: Set<String> {
    Set((io.metadata["zero_gradient_parameters"] ?? "").split(separator: ",").map(String.init))
  }

  /// The float64 norm of the whole gradient, over every parameter.
  public var totalGradientNorm: Double {
    var sum = 0.0
    for name in io.file.names where name.hasPrefix("grad_norm_f64.") {
      let v = Double(io.file.tensors[name]!.item)
      sum += v * v
    }
    return sum.squareRoot()
  }

  /// Compares the gradients accumulated in `parameters` (named as in the state dict) with the
  /// float64 reference. Returns one message per problem, empty when all pass:
  /// - a parameter the golden does not know (a naming error) or one without a gradient;
  /// - for zero-gradient parameters, a gradient norm above `zeroBound` times the total norm;
  /// - otherwise, a relative L2 error above `relativeL2` on the stored leading rows, or a
  ///   whole-tensor norm off by more than `relativeL2` from the reference norm.
  /// With `requireAll`, a golden parameter missing from `parameters` is a problem too.
  public func gradientMismatches(
    _ parameters: [(String, Parameter)], relativeL2: Double = 1e-3, zeroBound: Double = 1e-6,
    requireAll: Bool = true
  ) -> [String] {
    var problems: [String] = []
    let zero = zeroGradientParameters
    let total = totalGradientNorm
    var seen = Set<String>()
    for (name, p) in parameters {
      seen.insert(name)
      guard let normTensor = io.file.tensors["grad_norm_f64." + name] else {
        problems.append("\(name): not a parameter of the reference model \(tag)")
        continue
      }
      guard let grad = p.grad else {
        problems.append("\(name): no gradient")
        continue
      }
      var sum = 0.0
      for i in 0..<grad.count { sum += Double(grad.data[i]) * Double(grad.data[i]) }
      let norm = sum.squareRoot()
      if zero.contains(name) {
        if !(norm <= zeroBound * total) {
          problems.append(
            "\(name): true gradient is zero, found norm \(norm) (bound \(zeroBound * total))")
        }
        continue
      }
      if let m = io.mismatch(grad, "grad_f64." + name, relativeL2: relativeL2, leadingRows: true) {
        problems.append(m)
      }
      let reference = Double(normTensor.item)
      if !(abs(norm - reference) <= relativeL2 * reference) {
        problems.append("\(name): gradient norm \(norm), reference \(reference)")
      }
    }
    if requireAll {
      for name in io.file.names where name.hasPrefix("grad_norm_f64.") {
        let key = String(name.dropFirst("grad_norm_f64.".count))
        if !seen.contains(key) { problems.append("\(key): missing from the model") }
      }
    }
    return problems
  }

  /// Compares running statistics (`(name, value)` pairs, e.g. a state dict after the
  /// training-mode pass) with `after.<name>`; entries the golden does not store are skipped.
  public func runningStatisticMismatches(
    _ state: [(String, Tensor)], relativeL2: Double = 1e-4
  ) -> [String] {
    state.compactMap { name, value in
      io.contains("after." + name)
        ? io.mismatch(value, "after." + name, relativeL2: relativeL2) : nil
    }
  }
}
