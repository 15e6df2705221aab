/// Differentiable shape operations: views where possible, one copy where not.
extension Tensor {
  /// The same elements under a new shape (a view; one dimension may be -1).
  public func reshaped(_ newShape: [Int]) throws -> Tensor {
    var target = newShape
    if let unknown = target.firstIndex(of: -1) {
      let known = target.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
      guard known > 0, count % known == 0 else {
        throw TensorError.shapeMismatch(
          operation: "reshape", shapes: [shape, newShape], detail: "cannot infer the -1 dimension")
      }
      target[unknown] = count / known
    }
    guard target.reduce(1, *) == count, target.allSatisfy({ $0 >= 0 }) else {
      throw TensorError.shapeMismatch(
        operation: "reshape", shapes: [shape, newShape], detail: "element counts differ")
    }
    let out = Tensor(shape: target, storage: storage, offset: offset)
    let s = shape
    return Tensor.record("reshape", output: out, inputs: [self]) { g in
      [Tensor(shape: s, storage: g.storage, offset: g.offset)]
    }
  }

  /// `[N, ...]` to `[N, rest]`, like `torch.flatten(x, 1)`.
  public func flattened() throws -> Tensor {
    guard rank >= 1 else {
      throw TensorError.shapeMismatch(operation: "flatten", shapes: [shape], detail: "rank 0")
    }
    return try reshaped([shape[0], count / max(shape[0], 1)])
  }

  /// Concatenation along dimension 1 (channels), like `torch.cat(xs, 1)`.
  public static func concatChannels(_ parts: [Tensor]) throws -> Tensor {
    guard let first = parts.first else {
      throw TensorError.invalidArgument(operation: "concat", detail: "no tensors to concatenate")
    }
    for p in parts {
      guard p.rank >= 2, p.shape[0] == first.shape[0],
        Array(p.shape.dropFirst(2)) == Array(first.shape.dropFirst(2))
      else {
        throw TensorError.shapeMismatch(
          operation: "concat", shapes: parts.map(\.shape),
          detail: "all dimensions but the channel dimension must agree")
      }
    }
    let n = first.shape[0]
    let inner = first.shape.dropFirst(2).reduce(1, *)
    let channels = parts.map { $0.shape[1] }
    let total = channels.reduce(0, +)
    var outShape = first.shape
    outShape[1] = total
    let backend = backend("concat", parts[0], parts.count > 1 ? parts[1] : nil)
    let out = first.empty(outShape)
    var c0 = 0
    for (p, c) in zip(parts, channels) {
      precondition(
        p.device == first.device, "concat: inputs on devices \(first.device) and \(p.device)")
      backend.copyBlocks(
        from: p, sourceStart: 0, sourceStride: c * inner, into: out,
        destinationStart: c0 * inner, destinationStride: total * inner, blocks: n,
        length: c * inner)
      c0 += c
    }
    return record("concat", output: out, inputs: parts) { g in
      var c0 = 0
      var grads: [Tensor?] = []
      for c in channels {
        grads.append(g.narrowChannelsRaw(start: c0, count: c))
        c0 += c
      }
      return grads
    }
  }

  /// Channels `start..<start+count` along dimension 1 (a copy), like `x[:, start:start+count]`.
  public func narrowChannels(start: Int, count c: Int) throws -> Tensor {
    guard rank >= 2, start >= 0, c >= 0, start + c <= shape[1] else {
      throw TensorError.shapeMismatch(
        operation: "narrowChannels", shapes: [shape],
        detail: "channels \(start)..<\(start + c) out of range")
    }
    let out = narrowChannelsRaw(start: start, count: c)
    let s = shape
    return Tensor.record("narrowChannels", output: out, inputs: [self]) { g in
      let dx = Tensor(shape: s, repeating: 0, device: g.device)
      let inner = s.dropFirst(2).reduce(1, *)
      g.device.backend.copyBlocks(
        from: g, sourceStart: 0, sourceStride: c * inner, into: dx,
        destinationStart: start * inner, destinationStride: s[1] * inner, blocks: s[0],
        length: c * inner)
      return [dx]
    }
  }

  func narrowChannelsRaw(start: Int, count c: Int) -> Tensor {
    var outShape = shape
    outShape[1] = c
    if shape[0] == 1 || c == shape[1] {
      // Contiguous already: a view.
      let inner = shape.dropFirst(2).reduce(1, *)
      if c == shape[1] { return Tensor(shape: outShape, storage: storage, offset: offset) }
      return Tensor(shape: outShape, storage: storage, offset: offset + start * inner)
    }
    let out = empty(outShape)
    let inner = shape.dropFirst(2).reduce(1, *)
    device.backend.copyBlocks(
      from: self, sourceStart: start * inner, sourceStride: shape[1] * inner, into: out,
      destinationStart: 0, destinationStride: c * inner, blocks: shape[0], length: c * inner)
    return out
  }

  /// ShuffleNetV2's channel split: even channels and odd channels of an `[N, C, H, W]` tensor,
  /// exactly as the reference (`reshape(N*C/2, 2, HW).permute(1, 0, 2)`).
  public func splitChannelsByParity() throws -> (even: Tensor, odd: Tensor) {
    guard rank == 4, shape[1] % 2 == 0 else {
      throw TensorError.shapeMismatch(
        operation: "splitChannelsByParity", shapes: [shape],
        detail: "expects [N, C, H, W] with an even channel count")
    }
    let (n, c, plane) = (shape[0], shape[1], shape[2] * shape[3])
    let half = c / 2
    let outShape = [n, half, shape[2], shape[3]]
    // Channel 2k + parity of every sample is plane (2 (b half + k) + parity): every other plane.
    let backend = device.backend
    let even = empty(outShape)
    let odd = empty(outShape)
    for (part, parity) in [(even, 0), (odd, 1)] {
      backend.copyBlocks(
        from: self, sourceStart: parity * plane, sourceStride: 2 * plane, into: part,
        destinationStart: 0, destinationStride: plane, blocks: n * half, length: plane)
    }
    let s = shape
    // Each half's gradient fills every other plane of the input's: the first half back writes
    // its planes and zeros between them, the second adds its planes in place (when nothing
    // else has added to the input's gradient, the usual case, the zeros are overwritten).
    func interleave(_ g: Tensor, parity: Int, into soFar: Tensor?) -> Tensor {
      if let soFar {
        g.device.backend.addBlocks(
          from: g, sourceStart: 0, sourceStride: plane, into: soFar,
          destinationStart: parity * plane, destinationStride: 2 * plane, blocks: n * half,
          length: plane)
        return soFar
      }
      let dx = g.empty(s)
      g.device.backend.copyBlocks(
        from: g, sourceStart: 0, sourceStride: plane, into: dx,
        destinationStart: parity * plane, destinationStride: 2 * plane, blocks: n * half,
        length: plane)
      g.device.backend.fillBlocks(
        dx, with: 0, start: (1 - parity) * plane, stride: 2 * plane, blocks: n * half,
        length: plane)
      return dx
    }
    let e = Tensor.record("splitEven", output: even, input: self) { g, soFar in
      interleave(g, parity: 0, into: soFar)
    }
    let o = Tensor.record("splitOdd", output: odd, input: self) { g, soFar in
      interleave(g, parity: 1, into: soFar)
    }
    return (e, o)
  }

  /// Samples `start..<start+count` of the batch (a view).
  public func narrowBatch(start: Int, count c: Int) throws -> Tensor {
    guard rank >= 1, start >= 0, c >= 0, start + c <= shape[0] else {
      throw TensorError.shapeMismatch(
        operation: "narrowBatch", shapes: [shape],
        detail: "samples \(start)..<\(start + c) out of range")
    }
    let inner = shape.dropFirst().reduce(1, *)
    var outShape = shape
    outShape[0] = c
    let out = Tensor(shape: outShape, storage: storage, offset: offset + start * inner)
    let s = shape
    return Tensor.record("narrowBatch", output: out, inputs: [self]) { g in
      let dx = Tensor(shape: s, repeating: 0, device: g.device)
      g.device.backend.copyBlocks(
        from: g, sourceStart: 0, sourceStride: 0, into: dx, destinationStart: start * inner,
        destinationStride: 0, blocks: 1, length: c * inner)
      return [dx]
    }
  }
}
