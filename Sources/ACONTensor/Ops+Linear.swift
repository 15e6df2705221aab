/// Matrix products through BLAS.
extension Tensor {
  /// `[m, k] x [k, n]`.
  public static func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.rank == 2, b.rank == 2, a.shape[1] == b.shape[0] else {
      throw TensorError.shapeMismatch(
        operation: "matmul", shapes: [a.shape, b.shape], detail: "expects [m, k] and [k, n]")
    }
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    let backend = backend("matmul", a, b)
    let out = a.empty([m, n])
    backend.matrixMultiply(
      a, transposed: false, b, transposed: false, m: m, n: n, k: k, beta: 0, into: out)
    let (ra, rb) = (a.detached, b.detached)
    let (na, nb) = (a.node != nil, b.node != nil)
    let productFlops = 2 * Double(m) * Double(n) * Double(k)
    Profiler.addWork("forward", "matmul", flops: productFlops)
    return record("matmul", output: out, inputs: [a, b]) { g in
      Profiler.addWork(
        "backward", "matmul", flops: productFlops * Double((na ? 1 : 0) + (nb ? 1 : 0)))
      var da: Tensor? = nil
      var db: Tensor? = nil
      if na {
        let t = g.empty([m, k])
        backend.matrixMultiply(
          g, transposed: false, rb, transposed: true, m: m, n: k, k: n, beta: 0, into: t)
        da = t
      }
      if nb {
        let t = g.empty([k, n])
        backend.matrixMultiply(
          ra, transposed: true, g, transposed: false, m: k, n: n, k: m, beta: 0, into: t)
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
    let backend = backend("linear", x, weight, bias)
    let out = x.empty([n, outF])
    OperationCounter.add("linear", weight: weight, outputShape: [n, outF], macs: n * outF * inF)
    if let bias {
      // Every row starts as the bias; the product adds to it.
      backend.copyBlocks(
        from: bias, sourceStart: 0, sourceStride: 0, into: out, destinationStart: 0,
        destinationStride: outF, blocks: n, length: outF)
    }
    backend.matrixMultiply(
      x, transposed: false, weight, transposed: true, m: n, n: outF, k: inF,
      beta: bias == nil ? 0 : 1, into: out)
    let (rx, rw) = (x.detached, weight.detached)
    let needX = x.node != nil
    let needW = weight.node != nil
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    let hasBias = bias != nil
    let productFlops = 2 * Double(n) * Double(outF) * Double(inF)
    Profiler.addWork("forward", "linear", flops: productFlops)
    return record("linear", output: out, inputs: inputs) { g in
      Profiler.addWork(
        "backward", "linear", flops: productFlops * Double((needX ? 1 : 0) + (needW ? 1 : 0)))
      var grads: [Tensor?] = [nil, nil]
      if needX {
        let dx = g.empty([n, inF])
        backend.matrixMultiply(
          g, transposed: false, rw, transposed: false, m: n, n: inF, k: outF, beta: 0, into: dx)
        grads[0] = dx
      }
      if needW {
        let dw = g.empty([outF, inF])
        backend.matrixMultiply(
          g, transposed: true, rx, transposed: false, m: outF, n: inF, k: n, beta: 0, into: dw)
        grads[1] = dw
      }
      if hasBias { grads.append(g.sumRaw(toShape: [outF])) }
      return grads
    }
  }
}
