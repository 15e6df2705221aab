import ACONTensor
import Foundation

/// PyTorch-style state dictionaries: the module tree's parameters and buffers by dotted name,
/// loadable from and savable to safetensors files that PyTorch reads and writes.
extension Module {
  /// The prefix `nn.DataParallel` and `DistributedDataParallel` put before every key.
  public static var dataParallelPrefix: String { "module." }

  /// Every parameter and buffer by dotted name, in PyTorch's `state_dict()` order.
  ///
  /// The tensors are copies, so a saved snapshot does not change when training goes on.
  public func stateDict() -> [(String, Tensor)] {
    stateEntries().map { ($0.name, $0.value.copy()) }
  }

  /// Copies `tensors` into the parameters and buffers of the same names.
  ///
  /// Keys may carry the `module.` prefix of a DataParallel checkpoint. With `strict`, the keys
  /// must match the module's exactly; the error lists every missing and unexpected key. Without
  /// it, only the keys both sides have are loaded. A shape mismatch is an error either way
  /// (as in PyTorch), naming the key and both shapes. Nothing is changed when an error is thrown.
  /// A missing `num_batches_tracked` is accepted: PyTorch checkpoints from before version 0.4.1
  /// lack it, and it only counts steps.
  public func loadStateDict(_ tensors: [String: Tensor], strict: Bool = true) throws {
    let entries = stateEntries()
    let names = Set(entries.map(\.name))
    let source = Self.strippingDataParallelPrefix(tensors, moduleNames: names)

    var missing: [String] = []
    var mismatched: [String] = []
    var assignments: [(StateEntry, Tensor)] = []
    for entry in entries {
      guard let t = source[entry.name] else {
        if !entry.name.hasSuffix("num_batches_tracked") { missing.append(entry.name) }
        continue
      }
      if t.shape != entry.value.shape {
        mismatched.append(
          "\(entry.name): expected shape \(describe(entry.value.shape)), found \(describe(t.shape))"
        )
        continue
      }
      assignments.append((entry, t))
    }
    let unexpected = source.keys.filter { !names.contains($0) }.sorted()
    var problems: [String] = []
    if !mismatched.isEmpty {
      problems.append("size mismatch for " + mismatched.joined(separator: "; "))
    }
    if strict {
      if !missing.isEmpty { problems.append("missing keys: " + missing.joined(separator: ", ")) }
      if !unexpected.isEmpty {
        problems.append("unexpected keys: " + unexpected.joined(separator: ", "))
      }
    }
    guard problems.isEmpty else {
      throw TensorError.invalidArgument(
        operation: "loadStateDict(\(String(describing: type(of: self))))",
        detail: problems.joined(separator: ". "))
    }
    for (entry, t) in assignments {
      switch entry {
      case .parameter(_, let p): p.value = t.detached.copy()
      case .buffer(_, let b): b.value = t.detached.copy()
      }
    }
  }

  /// Saves the state dict as a safetensors file: float32 throughout, except integer buffers
  /// (`num_batches_tracked`), which are I64 scalars as in PyTorch. `metadata` is stored as is.
  public func save(to url: URL, metadata: [String: String] = [:]) throws {
    let entries = stateEntries().map { entry -> SafeTensors.Entry in
      if case .buffer(_, let b) = entry, b.storedAsInteger {
        return SafeTensors.Entry(entry.name, entry.value, dtype: .i64)
      }
      return SafeTensors.Entry(entry.name, entry.value)
    }
    try SafeTensors.write(entries, metadata: metadata, to: url)
  }

  /// Loads a safetensors state dict (written by ``save(to:metadata:)`` or by PyTorch's
  /// `safetensors.torch.save_file(model.state_dict(), ...)`) and returns the file's metadata.
  ///
  /// Errors name the file, then the problem, as ``loadStateDict(_:strict:)`` describes it.
  @discardableResult
  public func load(from url: URL, strict: Bool = true) throws -> [String: String] {
    let file = try SafeTensors.read(url)
    do {
      try loadStateDict(file.tensors, strict: strict)
    } catch let TensorError.invalidArgument(operation, detail) {
      throw TensorError.invalidFile(path: url.path, detail: "\(operation): \(detail)")
    }
    return file.metadata
  }

  /// Removes the `module.` prefix when every key has it and the module's own names do not.
  static func strippingDataParallelPrefix(
    _ tensors: [String: Tensor], moduleNames: Set<String>
  ) -> [String: Tensor] {
    let prefix = dataParallelPrefix
    guard !tensors.isEmpty, tensors.keys.allSatisfy({ $0.hasPrefix(prefix) }),
      !moduleNames.contains(where: { $0.hasPrefix(prefix) })
    else { return tensors }
    var out: [String: Tensor] = [:]
    for (k, v) in tensors { out[String(k.dropFirst(prefix.count))] = v }
    return out
  }
}
