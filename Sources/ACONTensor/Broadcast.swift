import ACONKernels

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
  /// Applies `f` elementwise with broadcasting; no gradient recording.
  static func broadcastBinary(
    _ op: String, _ a: Tensor, _ b: Tensor, _ f: (Float8, Float8) -> Float8
  ) throws -> Tensor {
    if a.shape == b.shape {
      let out = Tensor(uninitializedShape: a.shape)
      ElementwiseKernel.zip(a.data, b.data, out.mutableData, count: a.count, f)
      return out
    }
    let plan = try BroadcastPlan.make(op, a.shape, b.shape)
    let out = Tensor(uninitializedShape: plan.outputShape)
    let n = plan.shape.last!
    let sa = plan.stridesA.last!
    let sb = plan.stridesB.last!
    let pa = a.data
    let pb = b.data
    let po = out.mutableData
    plan.forEachRun { oa, ob, oo in
      let x = pa + oa
      let y = pb + ob
      let z = po + oo
      if sa == 1 && sb == 1 {
        forEachVector(n) { i, l in store8(f(load8(x + i, lanes: l), load8(y + i, lanes: l)), z + i, lanes: l) }
      } else if sa == 1 {
        let v = Float8(repeating: y[0])
        forEachVector(n) { i, l in store8(f(load8(x + i, lanes: l), v), z + i, lanes: l) }
      } else if sb == 1 {
        let v = Float8(repeating: x[0])
        forEachVector(n) { i, l in store8(f(v, load8(y + i, lanes: l)), z + i, lanes: l) }
      } else {
        let v = f(Float8(repeating: x[0]), Float8(repeating: y[0]))
        for i in 0..<n { z[i] = v[0] }
      }
    }
    return out
  }

  /// Sums this tensor down to `target` (the shape of a broadcast operand). No recording.
  public func sumRaw(toShape target: [Int]) -> Tensor {
    if target == shape { return self }
    let plan = try! BroadcastPlan.make("sum", shape, target)
    let out = Tensor(shape: target, repeating: 0)
    let n = plan.shape.last!
    let st = plan.stridesB.last!
    let pg = data
    let po = out.mutableData
    plan.forEachRun { og, ot, _ in
      let x = pg + og
      if st == 1 {
        ElementwiseKernel.axpy(alpha: 1, x, po + ot, count: n)
      } else {
        po[ot] += ElementwiseKernel.sum(x, count: n)
      }
    }
    return out
  }
}
