import ACONTensor

/// The activations a network can be built with, by name (`--activation acon-c`), like timm's
/// `create_act`. The model zoo calls ``make(channels:using:reduction:)`` for every activation
/// site.
public enum ActivationKind: String, CaseIterable, Sendable {
  /// `max(x, 0)`.
  case relu = "relu"
  /// `x sigmoid(x)`.
  case swish = "swish"
  /// ACON-A: `x sigmoid(beta x)`.
  case aconA = "acon-a"
  /// ACON-B: `(1 - p) x sigmoid(beta (1 - p) x) + p x`.
  case aconB = "acon-b"
  /// ACON-C, the paper's main form.
  case aconC = "acon-c"
  /// meta-ACON with the reference channel-wise generator (with BatchNorm).
  case metaAcon = "meta-acon"
  /// meta-ACON, one beta per sample.
  case metaAconLayer = "meta-acon-layer"
  /// meta-ACON, one beta per element.
  case metaAconPixel = "meta-acon-pixel"
  /// meta-ACON, channel-wise generator without BatchNorm: trains at batch size 1.
  case metaAconBatch1 = "meta-acon-bs1"
  /// ACON-C with the hard sigmoid as its switch.
  case aconCHard = "acon-c-hard"
  /// meta-ACON (channel-wise, reference generator) with the hard sigmoid as its switch.
  case metaAconHard = "meta-acon-hard"
  /// ACON-FReLU from TFNet: the smooth maximum of `x` and `BN(dwconv3x3(x))`, then BN.
  case aconFReLU = "acon-frelu"

  /// Every valid name, for help texts and error messages.
  public static var names: [String] { allCases.map(\.rawValue) }

  /// The kind called `name` (case-insensitive; `_` accepted for `-`), or nil.
  public init?(name: String) {
    let key = name.lowercased().replacingOccurrences(of: "_", with: "-")
    guard let kind = ActivationKind(rawValue: key) else { return nil }
    self = kind
  }

  /// The kind called `name`, or an error that lists the valid names.
  public static func named(_ name: String) throws -> ActivationKind {
    guard let kind = ActivationKind(name: name) else {
      throw TensorError.invalidArgument(
        operation: "activation",
        detail: "unknown activation '\(name)'; valid names: \(names.joined(separator: ", "))")
    }
    return kind
  }

  /// Whether the activation has learnable parameters.
  public var isLearnable: Bool { self != .relu && self != .swish }

  /// A fresh layer for `channels` channels; `reduction` is meta-ACON's `r` (16, or 8 for very
  /// narrow networks). Random initial values are drawn from `rng`.
  public func make(channels: Int, using rng: inout RandomGenerator, reduction: Int = 16) -> Module {
    switch self {
    case .relu: return ReLU()
    case .swish: return Swish()
    case .aconA: return AconA(channels: channels)
    case .aconB: return AconB(channels: channels, using: &rng)
    case .aconC: return AconC(channels: channels, using: &rng)
    case .aconCHard: return AconC(channels: channels, gate: .hardSigmoid, using: &rng)
    case .metaAcon:
      return MetaAconC(channels: channels, reduction: reduction, generator: .channel, using: &rng)
    case .metaAconLayer:
      return MetaAconC(channels: channels, reduction: reduction, generator: .layer, using: &rng)
    case .metaAconPixel:
      return MetaAconC(channels: channels, reduction: reduction, generator: .pixel, using: &rng)
    case .metaAconBatch1:
      return MetaAconC(
        channels: channels, reduction: reduction, generator: .channelWithoutBatchNorm, using: &rng)
    case .metaAconHard:
      return MetaAconC(
        channels: channels, reduction: reduction, generator: .channel, gate: .hardSigmoid,
        using: &rng)
    case .aconFReLU:
      return AconFReLU(channels: channels, using: &rng)
    }
  }
}
