/// NumPy/PyTorch broadcasting for binary elementwise operations, with dimensions coalesced so
/// that the inner loop runs over one contiguous stretch (or a repeated scalar) at a time.
struct BroadcastPlan {
  /// Output shape after coalescing.
  var shape: [Int]
  /// Strides (in elements) of each operand over the coalesced shape; 0 where broadcast.
  var stridesA: [Int]
  var stridesB: [Int]
  /// The uncoalesced output shape.
  var outputShape: [Int]

  static func make(_ op: String, _ a: [Int], _ b: [Int]) throws -> BroadcastPlan {
    let rank = max(a.count, b.count)
    let pa = [Int](repeating: 1, count: rank - a.count) + a
    let pb = [Int](repeating: 1, count: rank - b.count) + b
    var out = [Int](repeating: 1, count: rank)
    for d in 0..<rank {
      if pa[d] == pb[d] || pb[d] == 1 {
        out[d] = pa[d]
      } else if pa[d] == 1 {
        out[d] = pb[d]
      } else {
        throw TensorError.shapeMismatch(
          operation: op, shapes: [a, b],
          detail: "dimension \(d) has sizes \(pa[d]) and \(pb[d]), which do not broadcast")
      }
    }
    func contiguousStrides(_ s: [Int]) -> [Int] {
      var st = [Int](repeating: 0, count: s.count)
      var acc = 1
      for d in stride(from: s.count - 1, through: 0, by: -1) {
        st[d] = s[d] == 1 ? 0 : acc
        acc *= s[d]
      }
      return st
    }
    let sa = contiguousStrides(pa)
    let sb = contiguousStrides(pb)
    // Coalesce adjacent dimensions whose strides continue each other in both operands.
    var shape: [Int] = []
    var csa: [Int] = []
    var csb: [Int] = []
    for d in 0..<rank where out[d] != 1 {
      if let last = shape.last,
        csa.last! == sa[d] * out[d], csb.last! == sb[d] * out[d]
      {
        shape[shape.count - 1] = last * out[d]
        csa[csa.count - 1] = sa[d]
        csb[csb.count - 1] = sb[d]
      } else {
        shape.append(out[d])
        csa.append(sa[d])
        csb.append(sb[d])
      }
    }
    if shape.isEmpty {
      shape = [1]
      csa = [0]
      csb = [0]
    }
    return BroadcastPlan(shape: shape, stridesA: csa, stridesB: csb, outputShape: out)
  }

  /// Calls `body(offsetA, offsetB, offsetOut)` at the start of every innermost run, in order.
  func forEachRun(_ body: (Int, Int, Int) -> Void) {
    let inner = shape.count - 1
    let runLength = shape[inner]
    var index = [Int](repeating: 0, count: max(inner, 0))
    var oa = 0
    var ob = 0
    var oo = 0
    let outer = shape.dropLast().reduce(1, *)
    for _ in 0..<outer {
      body(oa, ob, oo)
      oo += runLength
      var d = inner - 1
      while d >= 0 {
        index[d] += 1
        oa += stridesA[d]
        ob += stridesB[d]
        if index[d] < shape[d] { break }
        oa -= stridesA[d] * shape[d]
        ob -= stridesB[d] * shape[d]
        index[d] = 0
        d -= 1
      }
    }
  }
}

extension Tensor {
  /// `op(a, b)` elementwise with broadcasting; no gradient recording.
  static func broadcastBinary(_ op: BinaryOperation, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    let name = "\(op)"
    let backend = backend(name, a, b)
    let shape =
      a.shape == b.shape ? a.shape : try BroadcastPlan.make(name, a.shape, b.shape).outputShape
    let out = a.empty(shape)
    backend.binary(op, a, b, into: out)
    return out
  }

  /// Sums this tensor down to `target` (the shape of a broadcast operand). No recording.
  public func sumRaw(toShape target: [Int]) -> Tensor {
    if target == shape { return self }
    let out = empty(target)
    device.backend.reduce(self, toShapeOf: out)
    return out
  }
}
