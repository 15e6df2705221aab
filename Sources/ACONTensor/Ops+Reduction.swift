/// Differentiable reductions.
extension Tensor {
  /// Sum of all elements, as a 0-d tensor.
  public func sum() -> Tensor {
    let out = Tensor(shape: [], values: [device.backend.sum(self)], device: device)
    let s = shape
    return Tensor.record("sum", output: out, inputs: [self]) { g in
      [Tensor(shape: s, repeating: g.item, device: g.device)]
    }
  }

  /// Mean of all elements, as a 0-d tensor.
  public func mean() -> Tensor {
    let n = Float(count)
    let out = Tensor(shape: [], values: [device.backend.sum(self) / n], device: device)
    let s = shape
    return Tensor.record("mean", output: out, inputs: [self]) { g in
      [Tensor(shape: s, repeating: g.item / n, device: g.device)]
    }
  }

  /// Mean over the spatial dimensions of an `[N, C, H, W]` tensor, as `[N, C, 1, 1]`
  /// (PyTorch's `x.mean(dim=(2, 3), keepdim=True)` and adaptive average pooling to 1x1).
  public func spatialMean() throws -> Tensor {
    guard rank == 4 else {
      throw TensorError.shapeMismatch(
        operation: "spatialMean", shapes: [shape], detail: "expects [N, C, H, W]")
    }
    let (n, c, plane) = (shape[0], shape[1], shape[2] * shape[3])
    let backend = device.backend
    let out = empty([n, c, 1, 1])
    backend.planeMeans(self, centres: nil, planes: n * c, plane: plane, into: out)
    let s = shape
    return Tensor.record("spatialMean", output: out, inputs: [self]) { g in
      let dx = g.empty(s)
      backend.spreadPlanes(g, scale: 1 / Float(plane), planes: n * c, plane: plane, into: dx)
      return [dx]
    }
  }
}
