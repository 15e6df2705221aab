import ACONTensor

/// `max(x, 0)`, as PyTorch's `nn.ReLU`.
public final class ReLU: Module {
  public override init() { super.init() }

  public override func forward(_ x: Tensor) throws -> Tensor { x.relu() }
}

/// Returns its input, as PyTorch's `nn.Identity` (a placeholder where a layer is optional).
public final class Identity: Module {
  public override init() { super.init() }

  public override func forward(_ x: Tensor) throws -> Tensor { x }
}

/// `[N, d1, d2, ...]` to `[N, d1 * d2 * ...]`, as PyTorch's `nn.Flatten()` (a view).
public final class Flatten: Module {
  public override init() { super.init() }

  public override func forward(_ x: Tensor) throws -> Tensor {
    guard x.rank >= 1 else {
      throw TensorError.shapeMismatch(
        operation: "Flatten", shapes: [x.shape], detail: "expects at least a batch dimension")
    }
    return try x.flattened()
  }
}
