import ACONTensor

/// Runs the same computation on two devices and compares what it returns.
///
/// `body` builds its inputs from the generator it is given (seeded the same way on both
/// devices, so the inputs are identical) and returns named tensors. Element `i` of a tensor `t`
/// agrees when `|a_i - b_i| <= tolerance * max(1, max_j |b_j|)`: the tolerance is relative to
/// the tensor's largest magnitude (a gradient's small entries carry the rounding of its large
/// ones), and absolute for tensors of magnitude below 1.
public struct BackendComparison {
  public var tolerance: Float
  public var seed: UInt64

  public init(tolerance: Float, seed: UInt64 = 7) {
    self.tolerance = tolerance
    self.seed = seed
  }

  /// The tensors `body` returns on `device`, as arrays, in order.
  public func run(
    on device: Device, _ body: (inout RandomGenerator) throws -> [(String, Tensor)]
  ) throws -> [(String, [Float], Device)] {
    try withDefaultDevice(device) {
      var rng = RandomGenerator(seed: seed)
      return try body(&rng).map { ($0.0, $0.1.scalars, $0.1.device) }
    }
  }

  /// One message per tensor that disagrees between ``Device/cpu`` and `reference` (empty when
  /// all agree), and the largest scaled difference seen.
  public func failures(
    reference: Device, _ body: (inout RandomGenerator) throws -> [(String, Tensor)]
  ) throws -> (messages: [String], worst: Float) {
    let fast = try run(on: .cpu, body)
    let slow = try run(on: reference, body)
    var messages: [String] = []
    var worst: Float = 0
    for ((name, a, deviceA), (_, b, deviceB)) in zip(fast, slow) {
      if deviceA != .cpu || deviceB != reference {
        messages.append("\(name): computed on \(deviceA) and \(deviceB)")
      }
      guard a.count == b.count else {
        messages.append("\(name): \(a.count) and \(b.count) elements")
        continue
      }
      let scale = max(1, b.map { abs($0) }.max() ?? 0)
      var (bad, at): (Float, Int) = (0, 0)
      for i in 0..<a.count {
        let d = abs(a[i] - b[i]) / scale
        if !(d <= bad) { (bad, at) = (d.isNaN ? .infinity : d, i) }
      }
      worst = max(worst, bad)
      if !(bad <= tolerance) {
        messages.append(
          "\(name)[\(at)]: cpu \(a[at]), reference \(b[at]) (difference \(bad) of scale \(scale))")
      }
    }
    if fast.count != slow.count { messages.append("\(fast.count) and \(slow.count) tensors") }
    return (messages, worst)
  }
}
