import ACONTensor

/// Batch normalisation over channels, as PyTorch's `nn.BatchNorm2d`; it also accepts `[N, C]`
/// input, like `nn.BatchNorm1d`.
///
/// State, in PyTorch's order and names: parameters `weight` (init 1) and `bias` (init 0), both
/// exempt from weight decay; buffers `running_mean` (0), `running_var` (1) and
/// `num_batches_tracked` (0, stored as an integer). In training mode the layer normalises with
/// batch statistics, updates the running ones in place and counts the batch; in evaluation
/// mode it normalises with the running statistics.
public final class BatchNorm2d: Module {
  /// Number of channels `C`.
  public let channels: Int
  /// Added to the variance before the square root.
  public let epsilon: Float
  /// Weight of the current batch in the running statistics.
  public let momentum: Float
  /// Per-channel scale, `[C]`.
  public let weight: Parameter
  /// Per-channel shift, `[C]`.
  public let bias: Parameter
  /// Running mean, `[C]`.
  public let runningMean: Buffer
  /// Running (unbiased) variance, `[C]`.
  public let runningVariance: Buffer
  /// Number of training batches seen, shape `[]`.
  public let batchesTracked: Buffer

  public override var settingsDescription: String {
    "\(channels), eps=\(epsilon), momentum=\(momentum)"
  }

  /// A batch-norm layer over `channels` channels.
  public init(_ channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1) {
    precondition(channels > 0, "BatchNorm2d needs at least one channel, got \(channels)")
    self.channels = channels
    self.epsilon = epsilon
    self.momentum = momentum
    weight = Parameter(Tensor.ones([channels]), decays: false)
    bias = Parameter(Tensor.zeros([channels]), decays: false)
    runningMean = Buffer(Tensor.zeros([channels]))
    runningVariance = Buffer(Tensor.ones([channels]))
    batchesTracked = Buffer(Tensor(scalar: 0), storedAsInteger: true)
    super.init()
    register(parameter: weight, as: "weight")
    register(parameter: bias, as: "bias")
    register(buffer: runningMean, as: "running_mean")
    register(buffer: runningVariance, as: "running_var")
    register(buffer: batchesTracked, as: "num_batches_tracked")
  }

  public override func forward(_ x: Tensor) throws -> Tensor { try run(x, relu: false) }

  /// `relu(forward(x))` in one pass over memory: the same value, gradients and state updates as
  /// this layer followed by a ``ReLU``, with less traffic and no saved ReLU output. A model that
  /// uses it and must keep PyTorch's checkpoint keys leaves a parameter-free module (``ReLU``
  /// or ``Identity``) in the ReLU's slot.
  public func forwardWithReLU(_ x: Tensor) throws -> Tensor { try run(x, relu: true) }

  /// `relu(self(x) + residual)` as one op (see
  /// `Tensor.batchNormAddReLU(_:residual:weight:bias:runningMean:runningVariance:training:momentum:epsilon:)`).
  public func forwardWithResidualReLU(_ x: Tensor, residual: Tensor) throws -> Tensor {
    let y = try Tensor.batchNormAddReLU(
      x, residual: residual, weight: weight.value, bias: bias.value,
      runningMean: runningMean.value, runningVariance: runningVariance.value,
      training: isTraining, momentum: momentum, epsilon: epsilon)
    if isTraining { batchesTracked.increment() }
    return y
  }

  private func run(_ x: Tensor, relu: Bool) throws -> Tensor {
    let y = try Tensor.batchNorm(
      x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
      runningVariance: runningVariance.value, training: isTraining, momentum: momentum,
      epsilon: epsilon, fusedReLU: relu)
    if isTraining { batchesTracked.increment() }
    return y
  }
}
