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
    let backend = logits.device.backend
    let probabilities = logits.empty([n, k])
    let loss = backend.crossEntropyForward(
      logits, labels: labels, labelSmoothing: epsilon, probabilities: probabilities)
    let out = Tensor(shape: [], values: [loss], device: logits.device)
    return record("crossEntropy", output: out, inputs: [logits]) { g in
      let dx = g.empty([n, k])
      backend.crossEntropyBackward(
        probabilities: probabilities, labels: labels, labelSmoothing: epsilon,
        scale: g.item / Float(n), into: dx)
      return [dx]
    }
  }
}
