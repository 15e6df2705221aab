import ACONNN
import ACONTensor
import Foundation

/// Everything needed to rebuild a network: written into the metadata of the weights files the
/// project saves, so that commands reading them need no model flags.
public struct ModelConfiguration: Codable, Equatable, Sendable {
  /// A model zoo name: `shufflenetv2-0.5x`, `resnet50`, `mobilenetv1-0.25`, `mobilenetv2-1.0`,
  /// `tfnet-0.5`, ...
  public var model: String
  /// An activation name (`ActivationKind`): `relu`, `acon-c`, `meta-acon`, ...
  public var activation: String
  /// Number of classes of the classifier.
  public var classes: Int
  /// Channels of the input images (3 for RGB/BGR, 1 for grayscale).
  public var inputChannels: Int
  /// The small-input stem for 28-64 px images: the first convolution has stride 1 and the stem's
  /// max-pool is dropped (ResNet: a 3x3 stride-1 stem, as for CIFAR).
  public var smallInput: Bool

  public init(
    model: String, activation: String = "acon-c", classes: Int = 1000, inputChannels: Int = 3,
    smallInput: Bool = false
  ) {
    self.model = model
    self.activation = activation
    self.classes = classes
    self.inputChannels = inputChannels
    self.smallInput = smallInput
  }

  /// The configuration as safetensors metadata (`acon.model`, `acon.activation`, ...).
  public var metadata: [String: String] {
    [
      "acon.model": model, "acon.activation": activation, "acon.classes": String(classes),
      "acon.input_channels": String(inputChannels), "acon.small_input": String(smallInput),
      "format": "pt",
    ]
  }

  /// The largest class count accepted (ImageNet-21k has 21,841; a file claiming more is corrupt,
  /// and building its classifier would allocate without bound).
  public static let maximumClasses = 1 << 20
  /// The largest input channel count accepted.
  public static let maximumInputChannels = 1 << 12

  /// Rejects counts no model can be built with: below 1, or beyond ``maximumClasses`` and
  /// ``maximumInputChannels`` (so a corrupt file's metadata cannot ask for terabytes).
  public func validate() throws {
    guard (1...Self.maximumClasses).contains(classes) else {
      throw ModelError("the class count must lie in 1...\(Self.maximumClasses), not \(classes)")
    }
    guard (1...Self.maximumInputChannels).contains(inputChannels) else {
      throw ModelError(
        "the input channel count must lie in 1...\(Self.maximumInputChannels), not \(inputChannels)"
      )
    }
  }

  /// Reads a configuration from weights-file metadata; nil when the file was not written by
  /// this project.
  public init?(metadata: [String: String]) {
    guard let model = metadata["acon.model"], let activation = metadata["acon.activation"],
      let classes = metadata["acon.classes"].flatMap(Int.init)
    else { return nil }
    self.init(
      model: model, activation: activation, classes: classes,
      inputChannels: metadata["acon.input_channels"].flatMap(Int.init) ?? 3,
      smallInput: metadata["acon.small_input"] == "true")
  }
}

/// An error in choosing or building a model.
public struct ModelError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The model zoo: every network of the paper by name.
public enum ModelZoo {
  /// Every model name the zoo builds.
  public static let names: [String] =
    ShuffleNetV2.Width.allCases.map { "shufflenetv2-\($0.rawValue)" }
    + ResNet.Depth.allCases.map { "resnet\($0.rawValue)" }
    + MobileNetV1.widths.map { "mobilenetv1-\($0)" }
    + MobileNetV2.widths.map { "mobilenetv2-\($0)" }
    + TFNet.widths.map { "tfnet-\($0)" }

  /// Builds the network that `configuration` describes, initialised from `seed` as the
  /// reference does or, with `initialization: .pytorch`, with PyTorch's module defaults (see
  /// ``WeightInitialization``). `generatorInitialization` (nil: as `initialization`) sets the
  /// meta-ACON generators' start apart from the rest of the network.
  public static func make(
    _ configuration: ModelConfiguration, seed: UInt64 = 0,
    initialization: WeightInitialization = .reference,
    generatorInitialization: WeightInitialization? = nil
  ) throws -> Module {
    guard let activation = ActivationKind(rawValue: configuration.activation) else {
      throw ModelError(
        "unknown activation '\(configuration.activation)'; choose one of: "
          + ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))
    }
    try configuration.validate()
    let builder = ModelBuilder(activation: activation, seed: seed)
    let model = try build(configuration, builder: builder)
    let scope: WeightInitialization.Scope? =
      switch (initialization, generatorInitialization ?? initialization) {
      case (.reference, .reference): nil
      case (.pytorch, .pytorch): .everything
      case (.reference, .pytorch): .generatorsOnly
      case (.pytorch, .reference): .allButGenerators
      }
    if let scope {
      WeightInitialization.applyPyTorchDefaults(to: model, scope: scope, using: &builder.rng)
    }
    return model
  }

  /// The network named by `configuration.model`, built and initialised (the reference's way) by
  /// `builder`.
  static func build(_ configuration: ModelConfiguration, builder: ModelBuilder) throws -> Module {
    let name = configuration.model.lowercased()
    func suffix(_ prefix: String) -> String? {
      name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : nil
    }
    if let w = suffix("shufflenetv2-"), let width = ShuffleNetV2.Width(rawValue: w) {
      return try ShuffleNetV2(width: width, configuration: configuration, builder: builder)
    }
    if let d = suffix("resnet"), let depth = ResNet.Depth(rawValue: d) {
      return try ResNet(depth: depth, configuration: configuration, builder: builder)
    }
    if let w = suffix("mobilenetv1-"), MobileNetV1.widths.contains(w) {
      return try MobileNetV1(width: Double(w)!, configuration: configuration, builder: builder)
    }
    if let w = suffix("mobilenetv2-"), MobileNetV2.widths.contains(w) {
      return try MobileNetV2(width: Double(w)!, configuration: configuration, builder: builder)
    }
    if let w = suffix("tfnet-"), TFNet.widths.contains(w) {
      return try TFNet(width: Double(w)!, configuration: configuration, builder: builder)
    }
    throw ModelError(
      "unknown model '\(configuration.model)'; choose one of: " + names.joined(separator: ", "))
  }
}
