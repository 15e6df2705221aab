import ACONNN
import ACONTensor

/// Starting a training run from given weights (fine-tuning, or a reference checkpoint), with
/// strict name and shape checks.
public enum InitialWeights {
  /// The dotted names of the classifier's parameters: those of the network's last `Linear`.
  public static func classifierNames(of model: Module) -> [String] {
    guard let (name, linear) = model.namedModules().last(where: { $0.1 is Linear }) else {
      return []
    }
    let prefix = name.isEmpty ? "" : name + "."
    return linear.namedParameters(prefix: prefix).map(\.0)
  }

  /// Loads `file` into `model`. Every parameter and buffer of the model must be in the file
  /// with its shape, and the file may hold nothing else (a `module.` prefix is accepted).
  /// With `resetClassifier`, the classifier's entries of the file are ignored, whatever their
  /// shape, and the model keeps its freshly initialised classifier (a different class count).
  /// Returns the names that were reset. `path` names the file in errors; nothing is changed
  /// when an error is thrown.
  @discardableResult
  public static func load(
    _ file: SafeTensorsFile, into model: Module, resetClassifier: Bool, path: String
  ) throws -> [String] {
    var tensors = WeightsFile.strippingDataParallelPrefix(file).tensors
    let classifier = classifierNames(of: model)
    if resetClassifier {
      let own = Dictionary(uniqueKeysWithValues: model.stateDict())
      for name in classifier { tensors[name] = own[name] }
    }
    do {
      try model.loadStateDict(tensors, strict: true)
    } catch {
      let mismatchedClassifier =
        !resetClassifier
        && classifier.contains { name in
          guard let t = tensors[name],
            let own = model.stateEntries().first(where: { $0.name == name })
          else {
            return false
          }
          return t.shape != own.value.shape
        }
      let hint = mismatchedClassifier ? " (a different class count? pass --reset-classifier)" : ""
      throw InteropError(path, "does not fit the model: \(error)\(hint)")
    }
    return resetClassifier ? classifier : []
  }
}
