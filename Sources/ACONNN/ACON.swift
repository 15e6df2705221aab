import ACONTensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
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
  public let gate: ACONGate

  /// The reference initialisation: p1, p2 ~ N(0, 1), beta = 1.
  public convenience init(
    channels: Int, gate: ACONGate = .sigmoid, using rng: inout RandomGenerator
  ) {
    let p1 = Tensor.randomNormal([1, channels, 1, 1], using: &rng)
    let p2 = Tensor.randomNormal([1, channels, 1, 1], using: &rng)
    self.init(p1: p1, p2: p2, beta: constantChannels(channels, 1), gate: gate)
  }

  /// Explicit initial values, each `[1, C, 1, 1]` (or `C` values in any per-channel shape).
  public init(p1: Tensor, p2: Tensor, beta: Tensor, gate: ACONGate = .sigmoid) {
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

// MARK: - meta-ACON

/// Per-channel affine map `w_c x + b_c` (`weight`, `bias` `[1, C, 1, 1]`, init 1 and 0).
public final class ChannelAffine: Module {
  public let weight: Parameter
  public let bias: Parameter

  public init(channels: Int) {
    weight = Parameter(constantChannels(channels, 1))
    bias = Parameter(constantChannels(channels, 0))
    super.init()
    register(parameter: weight, as: "weight")
    register(parameter: bias, as: "bias")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try x * channelView(weight.value, rank: x.rank) + channelView(bias.value, rank: x.rank)
  }
}

/// meta-ACON: ACON-C whose switching factor is generated from the input, `beta = G(x)`.
/// Source: paper section 4 ("Meta-ACON") and the reference `MetaAconC`.
///
/// Generators (paper section 4.2 compares the first three):
/// - `.channel` (default; the reference, exactly): `h = max(r, C / r)`,
///   `beta = sigmoid(bn2(fc2(bn1(fc1(mean_hw(x))))))` with `fc1` a 1x1 conv `C -> h` and `fc2`
///   `h -> C`, both with bias; no ReLU between them. One beta per (sample, channel). Its batch
///   norms cannot train on one sample (one value per channel), so training at batch size 1 throws.
/// - `.channelWithoutBatchNorm` (`meta-acon-bs1`): `beta = sigmoid(fc2(fc1(mean_hw(x))))`, the
///   reference with both BNs dropped (the reference authors' advice for batch size 1); the
///   biases of `fc1`, `fc2` remain. Works at any batch size, train or eval.
/// - `.layer`: one beta per sample, `beta = sigmoid(fc(mean_chw(x)))` with `fc` a 1x1 conv
///   `1 -> 1` initialised to the identity (weight 1, bias 0).
/// - `.pixel`: one beta per element, `beta = sigmoid(w_c x + b_c)` (`fc`, a per-channel affine
///   initialised to the identity, so it starts as the paper's `sigma(x_{c,h,w})`).
///
/// Parameters `p1`, `p2` are `[1, C, 1, 1]`, N(0, 1), as in the reference. With
/// `gate: .hardSigmoid` the switch (not the generator) uses the hard sigmoid (`meta-acon-hard`).
public final class MetaAconC: Module {
  /// How beta is generated from the input.
  public enum Generator: String, CaseIterable, Sendable {
    case channel, channelWithoutBatchNorm, layer, pixel
  }

  public let channels: Int
  public let generator: Generator
  public let gate: ACONGate
  /// Hidden width of the channel-wise generator, `max(r, C / r)`.
  public let hiddenChannels: Int
  public let p1: Parameter
  public let p2: Parameter
  /// `fc1` of the channel-wise generators, `fc` of the layer-wise one.
  public let fc1: Conv2d?
  public let bn1: BatchNorm2d?
  public let fc2: Conv2d?
  public let bn2: BatchNorm2d?
  /// The pixel-wise generator's affine map.
  public let affine: ChannelAffine?
  /// Called with the beta each forward pass generates (`[N, C, 1, 1]`, `[N, 1, 1, 1]` or the
  /// input's shape, as `generateBeta(_:)` returns it), to inspect the learned switching without
  /// a second generator pass (`acon plot beta`). Nil by default; it must not keep `beta`'s
  /// storage beyond the call without copying (`scalars`), since buffers are pooled.
  public var betaObserver: ((Tensor) -> Void)?

  public override var settingsDescription: String {
    "\(channels), generator=\(generator.rawValue)"
      + (generator == .channel || generator == .channelWithoutBatchNorm
        ? ", hidden=\(hiddenChannels)" : "")
      + (gate == .sigmoid ? "" : ", gate=\(gate)")
  }

  /// A meta-ACON layer for `channels` channels with reduction `r` (16 in the reference, 8 for
  /// ShuffleNetV2 0.5x).
  public init(
    channels: Int, reduction r: Int = 16, generator: Generator = .channel,
    gate: ACONGate = .sigmoid, using rng: inout RandomGenerator
  ) {
    precondition(channels > 0 && r > 0, "MetaAconC needs positive channels and reduction")
    self.channels = channels
    self.generator = generator
    self.gate = gate
    hiddenChannels = max(r, channels / r)
    // Reference order: the generator's layers are built first, then p1 and p2.
    switch generator {
    case .channel, .channelWithoutBatchNorm:
      fc1 = Conv2d(
        inputChannels: channels, outputChannels: hiddenChannels, kernelSize: 1, using: &rng)
      bn1 = generator == .channel ? BatchNorm2d(hiddenChannels) : nil
      fc2 = Conv2d(
        inputChannels: hiddenChannels, outputChannels: channels, kernelSize: 1, using: &rng)
      bn2 = generator == .channel ? BatchNorm2d(channels) : nil
      affine = nil
    case .layer:
      let fc = Conv2d(inputChannels: 1, outputChannels: 1, kernelSize: 1, using: &rng)
      fc.weight.value = Tensor(shape: [1, 1, 1, 1], values: [1])
      fc.bias!.value = Tensor(shape: [1], values: [0])
      fc1 = fc
      bn1 = nil
      fc2 = nil
      bn2 = nil
      affine = nil
    case .pixel:
      fc1 = nil
      bn1 = nil
      fc2 = nil
      bn2 = nil
      affine = ChannelAffine(channels: channels)
    }
    p1 = Parameter(Tensor.randomNormal([1, channels, 1, 1], using: &rng))
    p2 = Parameter(Tensor.randomNormal([1, channels, 1, 1], using: &rng))
    super.init()
    register(parameter: p1, as: "p1")
    register(parameter: p2, as: "p2")
    switch generator {
    case .channel, .channelWithoutBatchNorm:
      register(fc1!, as: "fc1")
      if let bn1 { register(bn1, as: "bn1") }
      register(fc2!, as: "fc2")
      if let bn2 { register(bn2, as: "bn2") }
    case .layer:
      register(fc1!, as: "fc")
    case .pixel:
      register(affine!, as: "fc")
    }
  }

  /// The channel-wise generators from the pooled means `[N, C, 1, 1]` to beta `[N, C, 1, 1]`.
  func channelGenerator(_ pooled: Tensor) throws -> Tensor {
    if let bn1, let bn2 {
      return try bn2(fc2!(bn1(fc1!(pooled)))).sigmoid()
    }
    return try fc2!(fc1!(pooled)).sigmoid()
  }

  /// The reference generator's BNs see one value per channel at batch size 1: refuse to train.
  func checkBatch(_ x: Tensor) throws {
    guard !(generator == .channel && isTraining && x.shape[0] == 1) else {
      throw TensorError.invalidArgument(
        operation: "MetaAconC",
        detail: "the channel-wise generator's BatchNorm layers cannot train on a batch of 1 "
          + "(one value per channel); use a batch of 2 or more, eval(), or the "
          + "'meta-acon-bs1' generator (no BatchNorm)")
    }
  }

  /// The switching factor `beta = G(x)`: `[N, C, 1, 1]` (channel-wise), `[N, 1, 1, 1]`
  /// (layer-wise) or `x`'s shape (pixel-wise); rank 2 (`[N, C]`, `[N, 1]`) for rank-2 input.
  public func generateBeta(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("MetaAconC", x, channels: channels)
    let n = x.shape[0]
    let image = x.rank == 4 ? x : try x.reshaped([n, channels, 1, 1])
    let beta: Tensor
    switch generator {
    case .channel, .channelWithoutBatchNorm:
      try checkBatch(x)
      beta = try channelGenerator(image.spatialMean())
    case .layer:
      beta = try layerBeta(fromPlaneMeans: image.spatialMean())
    case .pixel:
      return try affine!(x).sigmoid()
    }
    return x.rank == 4 ? beta : try beta.reshaped([n, beta.shape[1]])
  }

  /// beta `[N, C, 1, 1]` from the plane means `[N, C, 1, 1]`: the channel-wise generators, and
  /// the layer-wise one (the mean over channels of the plane means is the mean over C, H, W),
  /// whose one beta per sample is broadcast over the channels. Reports beta to `betaObserver`
  /// in the shape ``generateBeta(_:)`` returns.
  func planeGenerator(_ pooled: Tensor) throws -> Tensor {
    guard generator == .layer else {
      let beta = try channelGenerator(pooled)
      betaObserver?(beta)
      return beta
    }
    let beta = try layerBeta(fromPlaneMeans: pooled)
    betaObserver?(beta)
    return try beta * Tensor.ones([1, pooled.shape[1], 1, 1])
  }

  /// The layer-wise beta `[N, 1, 1, 1]`: the mean over C, H, W is the mean of the plane means.
  func layerBeta(fromPlaneMeans pooled: Tensor) throws -> Tensor {
    let (n, c) = (pooled.shape[0], pooled.shape[1])
    return try fc1!(pooled.reshaped([n, 1, c, 1]).spatialMean()).sigmoid()
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    if generator != .pixel {
      try checkActivationInput("MetaAconC", x, channels: channels)
      try checkBatch(x)
      // Fused: the pooled means feed the generator, whose gradient joins dx in one pass.
      return try Tensor.metaAcon(
        x, p1: channelView(p1.value, rank: x.rank), p2: channelView(p2.value, rank: x.rank),
        gate: gate, generator: planeGenerator)
    }
    if betaObserver == nil {
      // Pixel-wise, fused: beta is recomputed in the pullback rather than kept.
      try checkActivationInput("MetaAconC", x, channels: channels)
      return try Tensor.pixelMetaAcon(
        x, p1: channelView(p1.value, rank: x.rank), p2: channelView(p2.value, rank: x.rank),
        weight: channelView(affine!.weight.value, rank: x.rank),
        bias: channelView(affine!.bias.value, rank: x.rank), gate: gate)
    }
    // An observer wants beta itself: the separate ops make it.
    let beta = try generateBeta(x)
    betaObserver?(beta)
    return try Tensor.acon(
      x, p1: channelView(p1.value, rank: x.rank), p2: channelView(p2.value, rank: x.rank),
      beta: beta, gate: gate)
  }
}

// MARK: - ACON-FReLU (TFNet)

/// ACON-FReLU, exactly as the reference TFNet's `Acon_FReLU`:
/// `eta_a = x` (stride 1) or `maxpool3x3/2(x)` (stride 2), `eta_b = T(x) = bn1(conv_frelu(x))`
/// with a depthwise 3x3 conv of the same stride, and
/// `y = bn2((eta_a - eta_b) sigmoid(eta_a - eta_b) + eta_b)`: beta fixed at 1, one more BN on
/// the output. Source: paper section 3 (ACON-FReLU) and TFNet/network.py of the reference.
///
/// State names follow the reference: `conv_frelu.weight`, `conv_frelu.bias`, `bn1.*`, `bn2.*`
/// (`maxpool` has no state). An `[N, C]` input is treated as `[N, C, 1, 1]`.
public final class AconFReLU: Module {
  public let channels: Int
  public let stride: Int
  public let convFReLU: Conv2d
  public let bn1: BatchNorm2d
  public let maxpool: MaxPool2d
  public let bn2: BatchNorm2d

  public init(channels: Int, stride: Int = 1, using rng: inout RandomGenerator) {
    precondition(stride == 1 || stride == 2, "AconFReLU has stride 1 or 2, got \(stride)")
    self.channels = channels
    self.stride = stride
    // The funnel condition's depthwise 3x3 conv with bias, initialised as the reference TFNet:
    // weight N(0, 0.01), bias 0.
    convFReLU = Conv2d(
      inputChannels: channels, outputChannels: channels, kernelSize: 3, stride: stride,
      padding: 1, groups: channels, using: &rng)
    convFReLU.weight.value = Tensor.randomNormal([channels, 1, 3, 3], std: 0.01, using: &rng)
    convFReLU.bias!.value = Tensor.zeros([channels])
    bn1 = BatchNorm2d(channels)
    maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    bn2 = BatchNorm2d(channels)
    super.init()
    register(convFReLU, as: "conv_frelu")
    register(bn1, as: "bn1")
    register(maxpool, as: "maxpool")
    register(bn2, as: "bn2")
  }

  public override func forward(_ x: Tensor) throws -> Tensor {
    try checkActivationInput("AconFReLU", x, channels: channels)
    let image = x.rank == 4 ? x : try x.reshaped([x.shape[0], channels, 1, 1])
    let etaA = stride == 2 ? try maxpool(image) : image
    let etaB = try bn1(convFReLU(image))
    let y = try bn2(Tensor.smoothMaximum(etaA, etaB))
    return x.rank == 4 ? y : try y.reshaped([x.shape[0], channels])
  }
}
