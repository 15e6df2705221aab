import ACONKernels
import ACONTensor

#if canImport(Glibc)
  import Glibc
#endif

// The ACON family ("Activate or Not: Learning Customized Activation", Ma et al., CVPR 2021).
// Read beside /work/shared/paper.md section 1: this file holds the scalar math, in the paper's
// notation, and the layers. The fused SIMD kernels are in ACONKernels/ACONKernels.swift and are
// tested against the scalar functions here.

// MARK: - Scalar math (reference, Float64)

/// The scalar reference math of ACON-C. Every other member is ACON-C with fixed parameters:
/// ACON-A = (p1 = 1, p2 = 0), ACON-B = (p1 = 1, p2 = p), Swish = (1, 0, beta = 1).
public enum ACONMath {
  /// Logistic sigmoid, stable for any finite `u`.
  public static func sigmoid(_ u: Double) -> Double {
    u >= 0 ? 1 / (1 + exp(-u)) : exp(u) / (1 + exp(u))
  }

  /// PyTorch's `F.hardsigmoid`: `clamp(u / 6 + 1/2, 0, 1)`.
  public static func hardSigmoid(_ u: Double) -> Double { min(max(u / 6 + 0.5, 0), 1) }

  /// Smooth maximum of two inputs. Source: paper eq. (4), S_beta(eta_a, eta_b).
  public static func smoothMaximum(_ a: Double, _ b: Double, beta: Double) -> Double {
    (a - b) * sigmoid(beta * (a - b)) + b
  }

  /// ACON-C: `(p1 - p2) x sigma(beta (p1 - p2) x) + p2 x`. Source: paper eq. (6), table 1.
  public static func aconC(_ x: Double, p1: Double, p2: Double, beta: Double) -> Double {
    smoothMaximum(p1 * x, p2 * x, beta: beta)
  }

  /// ACON-C with the hard sigmoid gate (`acon-c-hard`).
  public static func aconCHard(_ x: Double, p1: Double, p2: Double, beta: Double) -> Double {
    let d = p1 - p2
    return d * x * hardSigmoid(beta * d * x) + p2 * x
  }

  /// `g(u) = sigma(u) + u sigma(u) (1 - sigma(u))`, the derivative of Swish. Source: paper
  /// section 3.3 (the derivative of ACON-C is `d g(u) + p2`).
  public static func swishDerivative(_ u: Double) -> Double {
    let s = sigmoid(u)
    return s + u * s * (1 - s)
  }

  /// `f'(x) = d g(beta d x) + p2` with `d = p1 - p2`. Source: paper section 3.3.
  public static func aconCDerivative(_ x: Double, p1: Double, p2: Double, beta: Double) -> Double {
    let d = p1 - p2
    return d * swishDerivative(beta * d * x) + p2
  }

  /// Where `f''` vanishes: `(2 - u) e^u + u + 2 = 0` at `u = +-2.39936`. Source: paper eq. (7).
  public static let extremalU = 2.399_357_280_515_467

  /// `max g - 1 = 0.0998`: how far Swish' overshoots 1 (and undershoots 0). Source: paper
  /// section 3.3, "the bounds of the first derivative".
  public static let derivativeOvershoot = swishDerivative(extremalU) - 1

  /// The bounds of ACON-C's first derivative over all `x`, independent of beta:
  /// `max f' = max(p1, p2) + 0.0998 |p1 - p2|`, `min f' = min(p1, p2) - 0.0998 |p1 - p2|`.
  /// Source: paper section 3.3 (learnable upper/lower bounds).
  public static func derivativeBounds(p1: Double, p2: Double) -> (lower: Double, upper: Double) {
    let spread = derivativeOvershoot * abs(p1 - p2)
    return (min(p1, p2) - spread, max(p1, p2) + spread)
  }

  /// The pullback of ACON-C at one element, keeping only `x`: with `s = sigma(beta d x)` and
  /// `t = s (1 + beta d x (1 - s))`, `dx = g (d t + p2)`, `dp1 = g x t`, `dp2 = g x - dp1`,
  /// `dbeta = g (d x)^2 s (1 - s)`. Source: paper.md section 1 (pullback that keeps only x).
  public static func aconCPullback(
    _ x: Double, p1: Double, p2: Double, beta: Double, upstream g: Double
  ) -> (dx: Double, dp1: Double, dp2: Double, dbeta: Double) {
    let d = p1 - p2
    let u = beta * d * x
    let s = sigmoid(u)
    let t = s * (1 + u * (1 - s))
    let dp1 = g * x * t
    return (g * (d * t + p2), dp1, g * x - dp1, g * d * x * d * x * s * (1 - s))
  }
}

// MARK: - Layers

/// Reads a per-channel parameter as the `[1, C]` view an `[N, C]` input needs.
func channelView(_ p: Tensor, rank: Int) throws -> Tensor {
  rank == 4 ? p : try p.reshaped([1, p.count])
}

/// Throws unless `x` is `[N, C, H, W]` or `[N, C]` with `C == channels`.
func checkActivationInput(_ layer: String, _ x: Tensor, channels: Int?) throws {
  guard x.rank == 4 || x.rank == 2 else {
    throw TensorError.shapeMismatch(
      operation: layer, shapes: [x.shape], detail: "expects [N, C, H, W] or [N, C]")
  }
  if let channels, x.shape[1] != channels {
    throw TensorError.shapeMismatch(
      operation: layer, shapes: [x.shape],
      detail: "the layer was built for \(channels) channels, the input has \(x.shape[1])")
  }
}

/// Constant per-channel tensors (not parameters: no gradient is kept for them).
func constantChannels(_ c: Int, _ value: Float) -> Tensor {
  Tensor(shape: [1, c, 1, 1], repeating: value)
}

/// `x sigma(x)` (Swish with beta = 1, also called SiLU); no parameters. Keeps only `x`.
/// Source: Ramachandran et al. 2017; ACON-A with beta = 1.
public final class Swish: Module {
  public override init() { super.init() }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("Swish", x, channels: nil)
    let c = x.shape[1]
    let one = try channelView(constantChannels(c, 1), rank: x.rank)
    let zero = try channelView(constantChannels(c, 0), rank: x.rank)
    return try Tensor.acon(x, p1: one, p2: zero, beta: one)
  }
}

/// ACON-A: `x sigma(beta x)`, beta learnable per channel (Swish with a learnable switch).
/// Source: paper table 1 (eta_a = x, eta_b = 0).
public final class AconA: Module {
  /// Switching factor, `[1, C, 1, 1]`, initialised to 1.
  public let beta: Parameter
  public let channels: Int

  public init(channels: Int, beta: Float = 1) {
    self.channels = channels
    self.beta = Parameter(constantChannels(channels, beta))
    super.init()
    register(parameter: self.beta, as: "beta")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("AconA", x, channels: channels)
    let one = try channelView(constantChannels(channels, 1), rank: x.rank)
    let zero = try channelView(constantChannels(channels, 0), rank: x.rank)
    return try Tensor.acon(x, p1: one, p2: zero, beta: channelView(beta.value, rank: x.rank))
  }
}

/// ACON-B: `(1 - p) x sigma(beta (1 - p) x) + p x`, p and beta learnable per channel
/// (a smooth PReLU). Source: paper table 1 (eta_a = x, eta_b = p x).
public final class AconB: Module {
  /// Slope of the negative part, `[1, C, 1, 1]`, initialised N(0, 1) like the reference's p2.
  public let p: Parameter
  /// Switching factor, `[1, C, 1, 1]`, initialised to 1.
  public let beta: Parameter
  public let channels: Int

  public init(channels: Int, using rng: inout RandomGenerator) {
    self.channels = channels
    self.p = Parameter(Tensor.randomNormal([1, channels, 1, 1], using: &rng))
    self.beta = Parameter(constantChannels(channels, 1))
    super.init()
    register(parameter: p, as: "p")
    register(parameter: beta, as: "beta")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("AconB", x, channels: channels)
    let one = try channelView(constantChannels(channels, 1), rank: x.rank)
    return try Tensor.acon(
      x, p1: one, p2: channelView(p.value, rank: x.rank),
      beta: channelView(beta.value, rank: x.rank))
  }
}

/// ACON-C: `(p1 - p2) x sigma(beta (p1 - p2) x) + p2 x`, all three learnable per channel.
/// Source: paper table 1 and the reference `AconC` (p1, p2 ~ N(0, 1), beta = 1).
///
/// With `gate: .hardSigmoid` the sigmoid becomes PyTorch's hard sigmoid (`acon-c-hard`).
public final class AconC: Module {
  /// `[1, C, 1, 1]`.
  public let p1: Parameter
  /// `[1, C, 1, 1]`.
  public let p2: Parameter
  /// `[1, C, 1, 1]`.
  public let beta: Parameter
  public let channels: Int
  public let gate: ACONKernels.Gate

  /// The reference initialisation: p1, p2 ~ N(0, 1), beta = 1.
  public convenience init(
    channels: Int, gate: ACONKernels.Gate = .sigmoid, using rng: inout RandomGenerator
  ) {
    let p1 = Tensor.randomNormal([1, channels, 1, 1], using: &rng)
    let p2 = Tensor.randomNormal([1, channels, 1, 1], using: &rng)
    self.init(p1: p1, p2: p2, beta: constantChannels(channels, 1), gate: gate)
  }

  /// Explicit initial values, each `[1, C, 1, 1]` (or `C` values in any per-channel shape).
  public init(p1: Tensor, p2: Tensor, beta: Tensor, gate: ACONKernels.Gate = .sigmoid) {
    let c = p1.count
    precondition(p2.count == c && beta.count == c, "p1, p2 and beta need one value per channel")
    func shaped(_ t: Tensor) -> Tensor { Tensor(shape: [1, c, 1, 1], values: t.scalars) }
    self.channels = c
    self.gate = gate
    self.p1 = Parameter(shaped(p1))
    self.p2 = Parameter(shaped(p2))
    self.beta = Parameter(shaped(beta))
    super.init()
    register(parameter: self.p1, as: "p1")
    register(parameter: self.p2, as: "p2")
    register(parameter: self.beta, as: "beta")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("AconC", x, channels: channels)
    return try Tensor.acon(
      x, p1: channelView(p1.value, rank: x.rank), p2: channelView(p2.value, rank: x.rank),
      beta: channelView(beta.value, rank: x.rank), gate: gate)
  }
}
