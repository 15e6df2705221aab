import ACONTensor

#if canImport(Glibc)
  import Glibc
#endif

/// Whether layers run fused with the batch norm before them (BN + ReLU, BN + ACON-C, BN +
/// meta-ACON), and, in inference (no gradient recorded, the batch norm in evaluation mode),
/// whether a convolution takes the batch norm after it into its weights
/// (``Conv2d/forward(_:foldingEvaluation:)``). On by default; the switch is per thread so that a
/// test or benchmark can compare the fused and the separate layers without disturbing other
/// threads.
public enum LayerFusion {
  private static let key: pthread_key_t = {
    var k = pthread_key_t()
    pthread_key_create(&k, nil)
    return k
  }()

  /// True unless the calling thread is inside ``withoutLayerFusion(_:)``.
  public static var isEnabled: Bool { Int(bitPattern: pthread_getspecific(key)) == 0 }

  fileprivate static var depthDisabled: Int {
    get { Int(bitPattern: pthread_getspecific(key)) }
    set { pthread_setspecific(key, UnsafeRawPointer(bitPattern: newValue)) }
  }
}

/// Runs `body` with every layer separate (no BN + activation fusion) on the calling thread.
public func withoutLayerFusion<T>(_ body: () throws -> T) rethrows -> T {
  LayerFusion.depthDisabled += 1
  defer { LayerFusion.depthDisabled -= 1 }
  return try body()
}

/// An activation with a fused path after a batch norm.
public protocol FusesAfterBatchNorm: Module {
  /// `self(batchNorm(x))` as one op, or nil where this input has no fused path (the caller
  /// then runs the two layers separately).
  func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor?
  /// `pool(self(batchNorm(x)))` as one op, or nil where this input has none (the caller then
  /// runs the three layers). Default: nil.
  func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, thenMaxPool pool: MaxPool2d)
    throws -> Tensor?
}

extension FusesAfterBatchNorm {
  public func forward(
    afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, thenMaxPool pool: MaxPool2d
  ) throws -> Tensor? { nil }
}

extension BatchNorm2d {
  /// `activation(self(x))`: one fused op when ``LayerFusion`` is on and the activation has a
  /// fused path (``FusesAfterBatchNorm``), else the two layers in turn. Same values, gradients
  /// and running-statistics updates either way.
  public func forward(_ x: Tensor, then activation: Module) throws -> Tensor {
    if LayerFusion.isEnabled, let fusable = activation as? FusesAfterBatchNorm,
      let y = try fusable.forward(afterBatchNorm: self, x)
    {
      return y
    }
    return try activation(self(x))
  }

  /// `pool(activation(self(x)))`: one fused op when ``LayerFusion`` is on and the activation
  /// has a fused path with a max pool, else as ``forward(_:then:)`` and then the pool. Same
  /// values, gradients and running-statistics updates either way.
  public func forward(_ x: Tensor, then activation: Module, thenMaxPool pool: MaxPool2d) throws
    -> Tensor
  {
    if LayerFusion.isEnabled, let fusable = activation as? FusesAfterBatchNorm,
      let y = try fusable.forward(afterBatchNorm: self, x, thenMaxPool: pool)
    {
      return y
    }
    return try pool(try forward(x, then: activation))
  }

  /// `relu(self(x))`, fused when ``LayerFusion`` is on.
  public func forwardThenReLU(_ x: Tensor) throws -> Tensor {
    LayerFusion.isEnabled ? try forwardWithReLU(x) : try self(x).relu()
  }

  /// `relu(self(x) + residual)`, the end of a residual block, fused when ``LayerFusion`` is on.
  public func forward(_ x: Tensor, addingThenReLU residual: Tensor) throws -> Tensor {
    if LayerFusion.isEnabled { return try forwardWithResidualReLU(x, residual: residual) }
    return try (self(x) + residual).relu()
  }

  /// The fused batch norm + ACON of this layer's state (see
  /// ``ACONTensor/Tensor/batchNormAcon(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:p1:p2:beta:gate:generator:)``).
  /// With `pool`, the fused op with the max pool after it
  /// (``ACONTensor/Tensor/batchNormAconMaxPool(_:weight:bias:runningMean:runningVariance:training:momentum:epsilon:p1:p2:beta:gate:generator:poolKernelSize:poolStride:poolPadding:)``).
  func forwardAcon(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor?, gate: ACONGate,
    generator: ((Tensor) throws -> Tensor)?, pool: MaxPool2d? = nil
  ) throws -> Tensor {
    let y: Tensor
    if let pool {
      y = try Tensor.batchNormAconMaxPool(
        x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
        runningVariance: runningVariance.value, training: isTraining, momentum: momentum,
        epsilon: epsilon, p1: p1, p2: p2, beta: beta, gate: gate, generator: generator,
        poolKernelSize: pool.kernelSize, poolStride: pool.stride, poolPadding: pool.padding)
    } else {
      y = try Tensor.batchNormAcon(
        x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
        runningVariance: runningVariance.value, training: isTraining, momentum: momentum,
        epsilon: epsilon, p1: p1, p2: p2, beta: beta, gate: gate, generator: generator)
    }
    if isTraining { batchesTracked.increment() }
    return y
  }
}

extension ReLU: FusesAfterBatchNorm {
  public func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor? {
    try batchNorm.forwardWithReLU(x)
  }
}

/// The ACON activations, whose fused op takes a max pool after it too: both entry points of
/// ``FusesAfterBatchNorm`` through one method.
protocol FusesWithMaxPoolAfterBatchNorm: FusesAfterBatchNorm {
  /// `pool(self(batchNorm(x)))` (`pool` nil: `self(batchNorm(x))`) as one op, or nil.
  func fusedForward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, pool: MaxPool2d?)
    throws -> Tensor?
}

extension FusesWithMaxPoolAfterBatchNorm {
  public func forward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor) throws -> Tensor? {
    try fusedForward(afterBatchNorm: batchNorm, x, pool: nil)
  }

  public func forward(
    afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, thenMaxPool pool: MaxPool2d
  ) throws -> Tensor? {
    try fusedForward(afterBatchNorm: batchNorm, x, pool: pool)
  }
}

extension AconC: FusesWithMaxPoolAfterBatchNorm {
  func fusedForward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, pool: MaxPool2d?)
    throws -> Tensor?
  {
    // Statistics across replicas: the two layers run separately (the fused op has no such path).
    guard x.rank == 4, !(batchNorm.isTraining && BatchNormReplicas.reducer != nil) else {
      return nil
    }
    try checkActivationInput("AconC", x, channels: channels)
    return try batchNorm.forwardAcon(
      x, p1: p1.value, p2: p2.value, beta: beta.value, gate: gate, generator: nil, pool: pool)
  }
}

extension MetaAconC: FusesWithMaxPoolAfterBatchNorm {
  func fusedForward(afterBatchNorm batchNorm: BatchNorm2d, _ x: Tensor, pool: MaxPool2d?)
    throws -> Tensor?
  {
    guard x.rank == 4, generator != .pixel,
      !(batchNorm.isTraining && BatchNormReplicas.reducer != nil)
    else { return nil }
    try checkActivationInput("MetaAconC", x, channels: channels)
    try checkBatch(x)
    return try batchNorm.forwardAcon(
      x, p1: p1.value, p2: p2.value, beta: nil, gate: gate, generator: planeGenerator, pool: pool)
  }
}
