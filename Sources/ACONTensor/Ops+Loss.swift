import ACONKernels

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Softmax cross-entropy, as PyTorch's `F.cross_entropy(logits, labels, label_smoothing:)`.
extension Tensor {
  /// Mean cross-entropy of `logits` `[N, K]` against class indices `labels` (N of them).
  ///
  /// With label smoothing `epsilon`, the target is `(1 - epsilon)` on the label plus
  /// `epsilon / K` on every class. Uses a max-shifted log-softmax, so large logits are safe.
  public static func crossEntropy(
    logits: Tensor, labels: [Int], labelSmoothing epsilon: Float = 0
  ) throws -> Tensor {
    guard logits.rank == 2, logits.shape[0] == labels.count else {
      throw TensorError.shapeMismatch(
        operation: "crossEntropy", shapes: [logits.shape, [labels.count]],
        detail: "expects logits [N, K] and N labels")
    }
    guard epsilon >= 0, epsilon <= 1 else {
      throw TensorError.invalidArgument(
        operation: "crossEntropy", detail: "label smoothing \(epsilon) is outside [0, 1]")
    }
    let (n, k) = (logits.shape[0], logits.shape[1])
    for (i, label) in labels.enumerated() where label < 0 || label >= k {
      throw TensorError.invalidArgument(
        operation: "crossEntropy", detail: "label \(label) of sample \(i) is outside 0..<\(k)")
    }
    // Softmax probabilities are kept for the pullback: N x K floats, tiny.
    let probabilities = Tensor(uninitializedShape: [n, k])
    var total = 0.0
    let x = logits.data
    let p = probabilities.mutableData
    for i in 0..<n {
      let row = x + i * k
      var m = -Float.infinity
      for j in 0..<k { m = max(m, row[j]) }
      var z = 0.0
      for j in 0..<k {
        let e = exp(Double(row[j] - m))
        p[i * k + j] = Float(e)
        z += e
      }
      let logZ = log(z) + Double(m)
      var sumLogP = 0.0
      for j in 0..<k {
        p[i * k + j] = Float(Double(p[i * k + j]) / z)
        sumLogP += Double(row[j]) - logZ
      }
      let nll = logZ - Double(row[labels[i]])
      total += Double(1 - epsilon) * nll - Double(epsilon) * sumLogP / Double(k)
    }
    let out = Tensor(scalar: Float(total / Double(n)))
    return record("crossEntropy", output: out, inputs: [logits]) { g in
      let scale = g.item / Float(n)
      let dx = Tensor(uninitializedShape: [n, k])
      let d = dx.mutableData
      let pp = probabilities.data
      for i in 0..<n {
        for j in 0..<k {
          let target = epsilon / Float(k) + (j == labels[i] ? 1 - epsilon : 0)
          d[i * k + j] = (pp[i * k + j] - target) * scale
        }
      }
      return [dx]
    }
  }
}
