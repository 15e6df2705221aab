/// The explicit in-place updates: optimizer steps and counters on storage the caller owns.
/// Everything else in the engine returns new tensors.
extension Tensor {
  /// Adds `amount` to every element in place, in the storage this tensor shares with its views
  /// (counters such as a batch norm's `num_batches_tracked`, owned by the caller).
  public func incrementInPlace(by amount: Float = 1) {
    device.backend.affine(self, scale: 1, shift: amount, into: self)
  }
}

extension Parameter {
  /// One step of PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov) on this parameter, in
  /// place: `g = gradient + weightDecay * p`; `buffer = momentum * buffer + g` (`buffer = g` on
  /// the first step); `p -= learningRate * buffer` (`p -= learningRate * g` without a buffer).
  ///
  /// - Parameters:
  ///   - gradient: the parameter's shape.
  ///   - momentumBuffer: the parameter's shape, updated in place; nil for momentum 0.
  ///   - learningRate: the step's learning rate.
  ///   - momentum: the buffer's decay (0: plain SGD).
  ///   - weightDecay: the L2 coefficient added to the gradient.
  ///   - firstStep: the buffer is overwritten by `g` instead of read (PyTorch's lazy buffer).
  public func sgdStep(
    gradient: Tensor, momentumBuffer: Tensor?, learningRate: Float, momentum: Float,
    weightDecay: Float, firstStep: Bool
  ) {
    checkState("SGD", gradient, momentumBuffer)
    Tensor.backend("SGD", value, gradient, momentumBuffer).sgdStep(
      parameter: value, gradient: gradient, momentumBuffer: momentumBuffer,
      learningRate: learningRate, momentum: momentum, weightDecay: weightDecay,
      firstStep: firstStep)
  }

  /// One step of PyTorch's `torch.optim.Adam` (`decoupled: false`: weight decay added to the
  /// gradient) or `torch.optim.AdamW` (`decoupled: true`: the parameter shrinks by
  /// `learningRate * weightDecay`), in place, with bias corrections for step `step` (from 1).
  /// `firstMoment` and `secondMoment` have the parameter's shape and are updated in place.
  public func adamStep(
    gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor, learningRate: Float,
    beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, decoupled: Bool, step: Int
  ) {
    checkState("Adam", gradient, firstMoment, secondMoment)
    Tensor.backend("Adam", value, gradient, firstMoment, secondMoment).adamStep(
      parameter: value, gradient: gradient, firstMoment: firstMoment,
      secondMoment: secondMoment, learningRate: learningRate, beta1: beta1, beta2: beta2,
      epsilon: epsilon, weightDecay: weightDecay, decoupled: decoupled, step: step)
  }

  private func checkState(_ optimizer: String, _ tensors: Tensor?...) {
    for t in tensors {
      guard let t else { continue }
      precondition(
        t.count == value.count,
        "\(optimizer) state of shape \(t.shape) for a parameter of shape \(value.shape)")
    }
  }
}

extension Tensor {
  /// A batch `[N, C, rest...]` made of `samples.count` samples of `sampleShape` (`[C, rest...]`)
  /// each, every value multiplied by `scale`.
  ///
  /// `channelOrder[c]` names the sample channel copied into channel `c` (for example `[2, 1, 0]`
  /// turns RGB planes into BGR); nil keeps the order.
  ///
  /// - Throws: `TensorError.shapeMismatch` when a sample does not hold `sampleShape`'s count of
  ///   values, or `channelOrder` is not a permutation of the channels.
  public init(
    batch samples: [[Float]], sampleShape: [Int], channelOrder: [Int]? = nil, scale: Float = 1
  ) throws {
    let per = sampleShape.reduce(1, *)
    let channels = sampleShape.first ?? 1
    let plane = channels > 0 ? per / channels : 0
    if let bad = samples.firstIndex(where: { $0.count != per }) {
      throw TensorError.shapeMismatch(
        operation: "Tensor(batch:)", shapes: [sampleShape, [samples[bad].count]],
        detail: "sample \(bad) holds \(samples[bad].count) values, the sample shape \(per)")
    }
    let order = channelOrder ?? Array(0..<channels)
    guard order.count == channels, order.sorted() == Array(0..<channels) else {
      throw TensorError.shapeMismatch(
        operation: "Tensor(batch:)", shapes: [sampleShape, order],
        detail: "the channel order must be a permutation of 0..<\(channels)")
    }
    self.init(uninitializedShape: [samples.count] + sampleShape)
    let base = mutableData
    for (b, sample) in samples.enumerated() {
      sample.withUnsafeBufferPointer { src in
        for c in 0..<channels {
          let s = src.baseAddress! + order[c] * plane
          let d = base + b * per + c * plane
          if scale == 1 {
            d.update(from: s, count: plane)
          } else {
            for i in 0..<plane { d[i] = s[i] * scale }
          }
        }
      }
    }
  }
}
