import ACONKernels

/// Differentiable reductions.
extension Tensor {
  /// Sum of all elements, as a 0-d tensor.
  public func sum() -> Tensor {
    let out = Tensor(scalar: ElementwiseKernel.sum(data, count: count))
    let s = shape
    return Tensor.record("sum", output: out, inputs: [self]) { g in
      [Tensor(shape: s, repeating: g.item)]
    }
  }

  /// Mean of all elements, as a 0-d tensor.
  public func mean() -> Tensor {
    let n = Float(count)
    let out = Tensor(scalar: ElementwiseKernel.sum(data, count: count) / n)
    let s = shape
    return Tensor.record("mean", output: out, inputs: [self]) { g in
      [Tensor(shape: s, repeating: g.item / n)]
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
    let out = Tensor(uninitializedShape: [n, c, 1, 1])
    let src = data
    let dst = out.mutableData
    let inv = 1 / Float(plane)
    Parallel.forRanges(n * c, minimumChunk: max(1, 16384 / max(plane, 1))) { range in
      for i in range { dst[i] = ElementwiseKernel.sumSerial(src + i * plane, count: plane) * inv }
    }
    let s = shape
    return Tensor.record("spatialMean", output: out, inputs: [self]) { g in
      let dx = Tensor(uninitializedShape: s)
      let gp = g.data
      let dp = dx.mutableData
      Parallel.forRanges(n * c, minimumChunk: max(1, 16384 / max(plane, 1))) { range in
        for i in range { (dp + i * plane).update(repeating: gp[i] * inv, count: plane) }
      }
      return [dx]
    }
  }
}
