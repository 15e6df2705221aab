import ACONKernels

/// Matrix products through BLAS.
extension Tensor {
  /// `[m, k] x [k, n]`.
  public static func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.rank == 2, b.rank == 2, a.shape[1] == b.shape[0] else {
      throw TensorError.shapeMismatch(
        operation: "matmul", shapes: [a.shape, b.shape], detail: "expects [m, k] and [k, n]")
    }
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    let out = Tensor(uninitializedShape: [m, n])
    BLAS.sgemm(
      transposeA: false, transposeB: false, m: m, n: n, k: k, a: a.data, lda: k, b: b.data,
      ldb: n, c: out.mutableData, ldc: n)
    let (ra, rb) = (a.detached, b.detached)
    let (na, nb) = (a.node != nil, b.node != nil)
    return record("matmul", output: out, inputs: [a, b]) { g in
      var da: Tensor? = nil
      var db: Tensor? = nil
      if na {
        let t = Tensor(uninitializedShape: [m, k])
        BLAS.sgemm(
          transposeA: false, transposeB: true, m: m, n: k, k: n, a: g.data, lda: n, b: rb.data,
          ldb: n, c: t.mutableData, ldc: k)
        da = t
      }
      if nb {
        let t = Tensor(uninitializedShape: [k, n])
        BLAS.sgemm(
          transposeA: true, transposeB: false, m: k, n: n, k: m, a: ra.data, lda: k, b: g.data,
          ldb: n, c: t.mutableData, ldc: n)
        db = t
      }
      return [da, db]
    }
  }

  /// A fully connected layer as PyTorch's `F.linear`: `x W^T + b`, with `x` `[N, in]`,
  /// `W` `[out, in]`, `b` `[out]`.
  public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard x.rank == 2, weight.rank == 2, x.shape[1] == weight.shape[1] else {
      throw TensorError.shapeMismatch(
        operation: "linear", shapes: [x.shape, weight.shape],
        detail: "expects input [N, in] and weight [out, in]")
    }
    let (n, inF, outF) = (x.shape[0], x.shape[1], weight.shape[0])
    if let bias, bias.shape != [outF] {
      throw TensorError.shapeMismatch(
        operation: "linear", shapes: [weight.shape, bias.shape], detail: "bias must be [out]")
    }
    let out = Tensor(uninitializedShape: [n, outF])
    OperationCounter.add("linear", weight: weight, outputShape: [n, outF], macs: n * outF * inF)
    if let bias {
      for i in 0..<n { (out.mutableData + i * outF).update(from: bias.data, count: outF) }
    }
    BLAS.sgemm(
      transposeA: false, transposeB: true, m: n, n: outF, k: inF, a: x.data, lda: inF,
      b: weight.data, ldb: inF, beta: bias == nil ? 0 : 1, c: out.mutableData, ldc: outF)
    let (rx, rw) = (x.detached, weight.detached)
    let needX = x.node != nil
    let needW = weight.node != nil
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    let hasBias = bias != nil
    return record("linear", output: out, inputs: inputs) { g in
      var grads: [Tensor?] = [nil, nil]
      if needX {
        let dx = Tensor(uninitializedShape: [n, inF])
        BLAS.sgemm(
          transposeA: false, transposeB: false, m: n, n: inF, k: outF, a: g.data, lda: outF,
          b: rw.data, ldb: inF, c: dx.mutableData, ldc: inF)
        grads[0] = dx
      }
      if needW {
        let dw = Tensor(uninitializedShape: [outF, inF])
        BLAS.sgemm(
          transposeA: true, transposeB: false, m: outF, n: inF, k: n, a: g.data, lda: outF,
          b: rx.data, ldb: inF, c: dw.mutableData, ldc: inF)
        grads[1] = dw
      }
      if hasBias { grads.append(g.sumRaw(toShape: [outF])) }
      return grads
    }
  }
}
