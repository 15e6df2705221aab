import ACONTensor
import Foundation

/// Compares the pullbacks recorded by `body` with central finite differences.
///
/// The scalar checked is `L = sum(body(inputs) * r)` for a fixed random `r`, so every output
/// element contributes. Derivatives are estimated in Float64 from Float32 evaluations with step
/// `step`; an element passes when `|analytic - numeric| <= absolute + relative * |numeric|`.
public struct GradientCheck {
  public var step: Float = 1e-2
  public var relative: Double = 1e-2
  public var absolute: Double = 1e-3
  /// At most this many elements per input are checked (chosen at random).
  public var maximumChecks = 64
  public var seed: UInt64 = 1

  public init(step: Float = 1e-2, relative: Double = 1e-2, absolute: Double = 1e-3) {
    self.step = step
    self.relative = relative
    self.absolute = absolute
  }

  /// The worst error found, one message per failing element (empty when all pass).
  public func failures(
    _ inputs: [Tensor], _ body: ([Tensor]) throws -> Tensor
  ) throws -> [String] {
    let parameters = inputs.enumerated().map { ("input \($0.offset)", Parameter($0.element)) }
    return try failures(parameters) { try body(parameters.map(\.1.value)) }
  }

  /// Checks the gradients of named `parameters` (a layer's, plus its input wrapped in a
  /// `Parameter`) of `L = sum(body() * r)`; `body` reads the parameters' current values.
  public func failures(
    _ parameters: [(String, Parameter)], _ body: () throws -> Tensor
  ) throws -> [String] {
    var rng = RandomGenerator(seed: seed)
    for (_, p) in parameters { p.zeroGrad() }
    let output = try body()
    let projection = Tensor.randomNormal(output.shape, using: &rng)
    let loss = try (output * projection).sum()
    try loss.backward()

    func evaluate() throws -> Double {
      let y = try withoutGradients { try body() }
      var total = 0.0
      for i in 0..<y.count { total += Double(y.data[i]) * Double(projection.data[i]) }
      return total
    }
    var messages: [String] = []
    for (name, p) in parameters {
      let analytic = p.grad ?? Tensor.zeros(p.value.shape)
      var indices = Array(0..<p.value.count)
      if indices.count > maximumChecks {
        indices.shuffle(using: &rng)
        indices = Array(indices.prefix(maximumChecks))
      }
      for i in indices {
        let original = p.value.data[i]
        p.value.mutableData[i] = original + step
        let plus = try evaluate()
        p.value.mutableData[i] = original - step
        let minus = try evaluate()
        p.value.mutableData[i] = original
        let numeric = (plus - minus) / (2 * Double(step))
        let a = Double(analytic.data[i])
        if abs(a - numeric) > absolute + relative * abs(numeric) {
          messages.append("\(name) element \(i): analytic \(a), numeric \(numeric)")
        }
      }
    }
    return messages
  }
}

/// Largest absolute difference between two tensors of equal shape.
public func maxAbsDifference(_ a: Tensor, _ b: Tensor) -> Float {
  precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape)")
  var m: Float = 0
  for i in 0..<a.count { m = max(m, abs(a.data[i] - b.data[i])) }
  return m
}

/// `||a - b|| / ||b||`, the relative L2 error used for parity with PyTorch.
public func relativeError(_ a: Tensor, _ reference: Tensor) -> Double {
  precondition(a.shape == reference.shape, "shapes \(a.shape) and \(reference.shape)")
  var num = 0.0
  var den = 0.0
  for i in 0..<a.count {
    let d = Double(a.data[i]) - Double(reference.data[i])
    num += d * d
    den += Double(reference.data[i]) * Double(reference.data[i])
  }
  return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}
