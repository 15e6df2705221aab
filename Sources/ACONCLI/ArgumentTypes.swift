import ACONModels
import ACONNN
import ACONTraining
import ArgumentParser

// The command line's choices as types: the parser validates them, `--help` lists them and shell
// completion offers them.

extension ActivationKind: ExpressibleByArgument {}
extension DataSetName: ExpressibleByArgument {}
extension LearningRateSchedule.Decay: ExpressibleByArgument {}
extension TrainingConfiguration.OptimizerKind: ExpressibleByArgument {}

/// A network of the zoo by name (`shufflenetv2-0.5x`, `resnet50`, ...; `acon info --list`).
struct ModelName: ExpressibleByArgument, CustomStringConvertible, Hashable {
  let name: String

  init?(argument: String) {
    guard ModelZoo.names.contains(argument) else { return nil }
    name = argument
  }

  /// The default network of `acon train`, `bench` and `compare`.
  static let shuffleNetV2Half = ModelName(argument: "shufflenetv2-0.5x")!

  static var allValueStrings: [String] { ModelZoo.names }
  var defaultValueDescription: String { name }
  var description: String { name }
}

/// What `acon bench` times.
enum BenchMode: String, CaseIterable, ExpressibleByArgument {
  /// Forward, backward and an SGD step.
  case train
  /// An eval-mode forward pass without gradients.
  case infer
}

/// Winograd's output tile side (`--winograd-tile 2` or `4`).
enum WinogradTileOption: Int, CaseIterable, ExpressibleByArgument {
  case two = 2
  case four = 4

  init?(argument: String) { self.init(rawValue: Int(argument) ?? 0) }
  var defaultValueDescription: String { String(rawValue) }
  static var allValueStrings: [String] { allCases.map { String($0.rawValue) } }
}

/// A comma-separated list of values (`--activations relu,acon-c`, `--seeds 0,1,2`), each parsed
/// and validated as `Element`.
struct CommaSeparated<Element: ExpressibleByArgument>: ExpressibleByArgument {
  var values: [Element]

  init(_ values: [Element]) { self.values = values }

  init?(argument: String) {
    var values: [Element] = []
    for item in argument.split(separator: ",", omittingEmptySubsequences: false) {
      let trimmed = item.trimmingCharacters(in: .whitespaces)
      guard let value = Element(argument: trimmed) else { return nil }
      values.append(value)
    }
    guard !values.isEmpty else { return nil }
    self.values = values
  }

  static var allValueStrings: [String] { Element.allValueStrings }
  var defaultValueDescription: String {
    values.map(\.defaultValueDescription).joined(separator: ",")
  }
}
