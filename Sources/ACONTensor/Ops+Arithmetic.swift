/// Differentiable elementwise arithmetic with PyTorch broadcasting.
extension Tensor {
  /// `a + b`, broadcasting.
  public static func add(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    let out = try broadcastBinary(.add, a, b)
    let (sa, sb) = (a.shape, b.shape)
    return record("add", output: out, inputs: [a, b]) { g in
      [g.sumRaw(toShape: sa), g.sumRaw(toShape: sb)]
    }
  }

  /// `a - b`, broadcasting.
  public static func subtract(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    let out = try broadcastBinary(.subtract, a, b)
    let (sa, sb) = (a.shape, b.shape)
    return record("subtract", output: out, inputs: [a, b]) { g in
      [g.sumRaw(toShape: sa), g.scaledRaw(-1).sumRaw(toShape: sb)]
    }
  }

  /// `a * b`, broadcasting.
  public static func multiply(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    let out = try broadcastBinary(.multiply, a, b)
    let (ra, rb) = (a.detached, b.detached)
    let (na, nb) = (a.node != nil, b.node != nil)
    return record("multiply", output: out, inputs: [a, b]) { g in
      [
        na ? try broadcastBinary(.multiply, g, rb).sumRaw(toShape: ra.shape) : nil,
        nb ? try broadcastBinary(.multiply, g, ra).sumRaw(toShape: rb.shape) : nil,
      ]
    }
  }

  /// `alpha * x`.
  public func scaled(_ alpha: Float) -> Tensor {
    let out = scaledRaw(alpha)
    return Tensor.record("scale", output: out, inputs: [self]) { g in [g.scaledRaw(alpha)] }
  }

  /// `x + c` for a constant `c`.
  public func adding(_ c: Float) -> Tensor {
    let out = empty(shape)
    device.backend.affine(self, scale: 1, shift: c, into: out)
    return Tensor.record("add_scalar", output: out, inputs: [self]) { g in [g] }
  }

  /// `alpha * x` without recording.
  public func scaledRaw(_ alpha: Float) -> Tensor {
    let out = empty(shape)
    device.backend.affine(self, scale: alpha, shift: 0, into: out)
    return out
  }

  public static func + (a: Tensor, b: Tensor) throws -> Tensor { try add(a, b) }
  public static func - (a: Tensor, b: Tensor) throws -> Tensor { try subtract(a, b) }
  public static func * (a: Tensor, b: Tensor) throws -> Tensor { try multiply(a, b) }
  public static func * (a: Tensor, b: Float) -> Tensor { a.scaled(b) }
  public static func * (a: Float, b: Tensor) -> Tensor { b.scaled(a) }
}

/// Differentiable pointwise nonlinearities that are not part of the ACON family.
extension Tensor {
  /// `max(x, 0)`; keeps only the input for the pullback.
  public func relu() -> Tensor {
    let backend = device.backend
    let out = empty(shape)
    backend.relu(self, into: out)
    // The output carries the same sign information as the input and is already alive.
    let saved = out
    return Tensor.record("relu", output: out, inputs: [self]) { g in
      let dx = g.empty(g.shape)
      backend.reluBackward(output: saved, gradient: g, into: dx)
      return [dx]
    }
  }

  /// The logistic sigmoid.
  public func sigmoid() -> Tensor {
    let backend = device.backend
    let out = empty(shape)
    backend.sigmoid(self, into: out)
    let saved = out
    return Tensor.record("sigmoid", output: out, inputs: [self]) { g in
      let dx = g.empty(g.shape)
      backend.sigmoidBackward(output: saved, gradient: g, into: dx)
      return [dx]
    }
  }
}
