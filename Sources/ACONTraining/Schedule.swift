import Foundation

/// A learning-rate schedule evaluated per iteration (the reference decays per iteration, not
/// per epoch).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
  /// The shape of the decay after warm-up.
  public enum Decay: String, Codable, CaseIterable, Sendable {
    /// `lr * (1 - t / T)`: the reference recipe's linear decay to 0.
    case linear
    /// `lr * (1 + cos(pi t / T)) / 2`.
    case cosine
    /// `lr` throughout.
    case constant
  }

  public var baseRate: Float
  public var decay: Decay
  /// Total number of iterations the decay spans (warm-up included).
  public var totalIterations: Int
  /// Iterations of linear warm-up from `baseRate / warmupIterations` to `baseRate`.
  public var warmupIterations: Int

  public init(baseRate: Float, decay: Decay, totalIterations: Int, warmupIterations: Int = 0) {
    self.baseRate = baseRate
    self.decay = decay
    self.totalIterations = max(1, totalIterations)
    self.warmupIterations = max(0, warmupIterations)
  }

  /// The learning rate for iteration `t` (0-based).
  public func rate(at t: Int) -> Float {
    if t < warmupIterations {
      return baseRate * Float(t + 1) / Float(warmupIterations)
    }
    let span = Double(max(1, totalIterations - warmupIterations))
    let progress = min(1, Double(t - warmupIterations) / span)
    switch decay {
    case .constant: return baseRate
    case .linear: return baseRate * Float(1 - progress)
    case .cosine: return baseRate * Float((1 + cos(Double.pi * progress)) / 2)
    }
  }
}
