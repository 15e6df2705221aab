import ACONKernels

/// The one interface between the differentiable ops of `ACONTensor` and the code that computes
/// them: every loop over a tensor's elements runs behind it.
///
/// The ops check their arguments, make their results (on the inputs' ``Device``), record the
/// tape, and call one requirement here forward and one or two in their pullback. Arguments are
/// tensors (storage handles with a shape), never host pointers; outputs are passed in already
/// made, with the shapes each requirement states, and a backend writes every element of them.
/// Inputs are contiguous, row-major and never aliased by an output unless a requirement says so.
///
/// Two backends implement it: ``CPUBackend`` (``Device/cpu``, the vectorised multi-threaded
/// kernels of `ACONKernels`) and, in the tests, a scalar reference backend that runs a whole
/// ShuffleNetV2 training step with plain loops and checks the CPU backend against it. A GPU
/// backend would implement the same requirements over its own memory; layers, models and
/// training code never see the difference.
///
/// Shapes: `x` of a batch norm or ACON op is `[N, C, H, W]` (or `[N, C]`, plane 1); "per channel"
/// tensors hold `C` floats.
public protocol ComputeBackend: AnyObject, Sendable {
  /// A short name for messages (`cpu`, `reference`).
  var name: String { get }

  // MARK: Memory

  /// Sets every element of `out` to `value`.
  func fill(_ out: Tensor, with value: Float)
  /// Copies `x` into `out` (same count).
  func copy(_ x: Tensor, into out: Tensor)
  /// Copies `blocks` runs of `length` floats: run `i` from `source` at element
  /// `sourceStart + i * sourceStride` to `destination` at `destinationStart + i * destinationStride`
  /// (concatenation, channel slices, ShuffleNetV2's channel split and their gradients).
  func copyBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int)
  /// Adds `blocks` runs of `length` floats of `source` to `destination`, laid out as in
  /// ``copyBlocks(from:sourceStart:sourceStride:into:destinationStart:destinationStride:blocks:length:)``
  /// (the gradient of the channel split, added in place).
  func addBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int)
  /// Sets `blocks` runs of `length` floats of `out`, run `i` at element `start + i * stride`, to
  /// `value`.
  func fillBlocks(
    _ out: Tensor, with value: Float, start: Int, stride: Int, blocks: Int, length: Int)

  // MARK: Elementwise

  /// `out = op(a, b)` with NumPy broadcasting; `out` has the broadcast shape.
  func binary(_ op: BinaryOperation, _ a: Tensor, _ b: Tensor, into out: Tensor)
  /// `out = alpha * x + c`; `out` may be `x` (an in-place update).
  func affine(_ x: Tensor, scale alpha: Float, shift c: Float, into out: Tensor)
  /// Sums `x` over the dimensions that `out`'s shape broadcasts (the gradient of a broadcast).
  func reduce(_ x: Tensor, toShapeOf out: Tensor)
  /// The sum of every element.
  func sum(_ x: Tensor) -> Float
  /// `out = max(x, 0)`.
  func relu(_ x: Tensor, into out: Tensor)
  /// `dx = g` where `output > 0`, else 0.
  func reluBackward(output: Tensor, gradient g: Tensor, into dx: Tensor)
  /// `out = 1 / (1 + exp(-x))`.
  func sigmoid(_ x: Tensor, into out: Tensor)
  /// `dx = g * output * (1 - output)`.
  func sigmoidBackward(output: Tensor, gradient g: Tensor, into dx: Tensor)
  /// `means[q]` = the mean of plane `q` of `x` (`planes` planes of `plane` floats); with
  /// `centres` (one per channel, plane `q` being of channel `q % centres.count`), the mean of
  /// `x - centres[channel]`.
  func planeMeans(_ x: Tensor, centres: Tensor?, planes: Int, plane: Int, into means: Tensor)
  /// `out[q * plane + i] = scale * values[q]` (the gradient of a plane mean).
  func spreadPlanes(_ values: Tensor, scale: Float, planes: Int, plane: Int, into out: Tensor)

  // MARK: Linear algebra, convolution, pooling

  /// `c = op(a) op(b) + beta * c` with `op(a)` `[m, k]` and `op(b)` `[k, n]` (the transpose of
  /// the stored matrix where asked); `beta` is 0 or 1 (1: `c` holds a value to add to).
  func matrixMultiply(
    _ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
    m: Int, n: Int, k: Int, beta: Float, into c: Tensor)
  /// PyTorch's `F.conv2d` forward for geometry `g`; `out` is `[N, Cout, OH, OW]`.
  func convolutionForward(
    _ g: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor)
  /// The gradients of a convolution for the outputs given (nil: not wanted); `input` is given
  /// when `weightGradient` is wanted, `weight` when `inputGradient` is. With
  /// `accumulatingInputGradient` the input gradient is added to what `dx` holds (only where
  /// ``convolutionAccumulatesInputGradient(_:)``).
  func convolutionBackward(
    _ g: ConvGeometry, input: Tensor?, weight: Tensor?, outputGradient dy: Tensor,
    inputGradient dx: Tensor?, accumulatingInputGradient: Bool, weightGradient dw: Tensor?,
    biasGradient db: Tensor?)
  /// Whether ``convolutionBackward(_:input:weight:outputGradient:inputGradient:accumulatingInputGradient:weightGradient:biasGradient:)``
  /// can add `g`'s input gradient in place.
  func convolutionAccumulatesInputGradient(_ g: ConvGeometry) -> Bool
  /// Max pooling over `planes` planes; `indices` (one element per output, backend-defined
  /// contents) keeps what ``maxPoolBackward(_:indices:planes:geometry:into:)`` needs.
  func maxPoolForward(
    _ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor, indices: Tensor)
  /// Max pooling over `planes` planes without what a backward pass needs (inference).
  func maxPoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor)
  /// Routes each output gradient to its window's maximum (ties: the first position).
  func maxPoolBackward(
    _ dy: Tensor, indices: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor)
  /// Average pooling, padded positions counted in the divisor.
  func averagePoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor)
  /// The gradient of ``averagePoolForward(_:planes:geometry:into:)``.
  func averagePoolBackward(_ dy: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor)

  // MARK: Batch normalisation

  /// Training statistics: `mean` and `invStd = 1 / sqrt(biased variance + epsilon)` per
  /// channel; the running statistics, when given, move by `momentum` towards the batch's (the
  /// variance unbiased); `centredPlaneMeans` (`[N * C]`), when given, receives each plane's mean
  /// of `x - mean[c]`.
  /// With `replicas`, this batch's count, mean and variance are combined through it into the
  /// whole data-parallel batch's before the rest (``BatchNormReplicaReducer``).
  func batchNormTrainingStatistics(
    _ x: Tensor, epsilon: Float, momentum: Float, runningMean: Tensor?, runningVariance: Tensor?,
    replicas: (any BatchNormReplicaReducer)?, mean: Tensor, invStd: Tensor,
    centredPlaneMeans: Tensor?)
  /// Evaluation statistics from the running ones; returns the first channel whose variance plus
  /// epsilon is not positive (nothing is defined then), else nil.
  func batchNormEvaluationStatistics(
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, mean: Tensor, invStd: Tensor
  ) -> Int?
  /// A convolution's weights and bias with the evaluation-mode batch norm after it folded in:
  /// `foldedWeight[o, ...] = weight[o, ...] * scale[o]` and `foldedBias[o] = bias[o] * scale[o]
  /// + shift[o]` (`bias` 0 where absent), `scale = batchNormWeight / sqrt(runningVariance +
  /// epsilon)`, `shift = batchNormBias - runningMean * scale`. Returns the first channel whose
  /// variance plus epsilon is not positive (nothing is defined then), else nil.
  func batchNormFoldedIntoConvolution(
    weight: Tensor, bias: Tensor?, batchNormWeight: Tensor, batchNormBias: Tensor,
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, foldedWeight: Tensor,
    foldedBias: Tensor
  ) -> Int?
  /// `out = (x - mean) * invStd * weight + bias` (+ `residual`), then a ReLU when `relu`.
  func batchNormNormalize(
    _ x: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor?, bias: Tensor?, relu: Bool,
    residual: Tensor?, into out: Tensor)
  /// The batch norm's gradients (through the batch statistics when `training`); with `relu`
  /// the ReLU after it is included (its gate recomputed from `x`). With `replicas` (training),
  /// the per-channel sums `sum dy` and `sum dy xhat` of this batch are the weight and bias
  /// gradients, and their sums over the replicas give the input gradient.
  func batchNormBackward(
    _ x: Tensor, gradient g: Tensor, training: Bool, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, relu: Bool, replicas: (any BatchNormReplicaReducer)?,
    inputGradient dx: Tensor?, weightGradient dw: Tensor?, biasGradient db: Tensor?)
  /// Training backward of `relu(batchNorm(x) + residual)` from its `output`: `dz` receives the
  /// gated gradient (also the residual's).
  func batchNormAddReLUBackward(
    _ x: Tensor, output: Tensor, gradient g: Tensor, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, gatedGradient dz: Tensor, inputGradient dx: Tensor?,
    weightGradient dw: Tensor?, biasGradient db: Tensor?)

  // MARK: The ACON family

  /// ACON-C `(p1 - p2) x h(beta (p1 - p2) x) + p2 x` with beta read through `layout`.
  func aconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout,
    gate: ACONGate, into out: Tensor)
  /// The gradients of ``aconForward(_:p1:p2:beta:layout:gate:into:)``; `dbeta` has beta's shape.
  func aconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor,
    p2Gradient dp2: Tensor, betaGradient dbeta: Tensor)
  /// `acon(scale[c] * x + shift[c])` with beta per plane (a batch norm folded into ACON).
  func aconAfterBatchNormForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, into out: Tensor)
  /// The first backward pass of the fused batch norm + ACON: `dz` (the gradient at the batch
  /// norm's output), the ACON parameters' gradients and, per plane `q`, `normSums[2q]` = sum of
  /// `dz` and `normSums[2q + 1]` = sum of `dz (x - mean[c])`.
  func aconAfterBatchNormBackward(
    _ x: Tensor, gradient g: Tensor, scale: Tensor, shift: Tensor, mean: Tensor, p1: Tensor,
    p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor,
    normSums: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor)
  /// Whether this backend runs the max pool after a fused batch norm + ACON on `x` as part of
  /// it (``aconAfterBatchNormMaxPoolForward(_:scale:shift:p1:p2:beta:layout:gate:pool:into:indices:)``
  /// and ``aconAfterBatchNormBackward(_:pooledGradient:indices:pool:scale:shift:mean:p1:p2:beta:layout:gate:dz:normSums:p1Gradient:p2Gradient:betaGradient:)``);
  /// otherwise the op runs the layer and ``maxPoolForward(_:planes:geometry:into:indices:)``
  /// apart. Default: false.
  func fusesMaxPoolAfterBatchNormACON(_ x: Tensor, pool: PoolGeometry) -> Bool
  /// `maxPool(acon(scale[c] * x + shift[c]))` into `pooled`, with the pool's `indices` (as
  /// ``maxPoolForward(_:planes:geometry:into:indices:)`` keeps them). Default: the two ops in
  /// turn through a temporary.
  func aconAfterBatchNormMaxPoolForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, pool: PoolGeometry, into pooled: Tensor,
    indices: Tensor)
  /// ``aconAfterBatchNormBackward(_:gradient:scale:shift:mean:p1:p2:beta:layout:gate:dz:normSums:p1Gradient:p2Gradient:betaGradient:)``
  /// for the layer of ``aconAfterBatchNormMaxPoolForward(_:scale:shift:p1:p2:beta:layout:gate:pool:into:indices:)``,
  /// from the gradient at the pool's output. Default: the pool's backward into a temporary,
  /// then that pass.
  func aconAfterBatchNormBackward(
    _ x: Tensor, pooledGradient: Tensor, indices: Tensor, pool: PoolGeometry, scale: Tensor,
    shift: Tensor, mean: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor, normSums: Tensor,
    p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor)
  /// The batch norm as an affine map per channel: `scale = invStd * weight`,
  /// `shift = bias - mean * scale`.
  func batchNormAffine(
    mean: Tensor, invStd: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor)
  /// The plane means of a batch norm's output, from its input's centred plane means:
  /// `means[q] = bias[c] + scale[c] * centredPlaneMeans[q]` (meta-ACON's pooled input).
  func batchNormPooledMeans(
    centredPlaneMeans: Tensor, scale: Tensor, bias: Tensor, into means: Tensor)
  /// The batch norm half of the fused pullback: its parameters' gradients and, when `dx` is
  /// given, the input's (through the batch statistics when `training`), from `dz` and the
  /// per-plane sums of ``aconAfterBatchNormBackward(_:gradient:scale:shift:mean:p1:p2:beta:layout:gate:dz:normSums:p1Gradient:p2Gradient:betaGradient:)``.
  /// With meta-ACON, `pooledGradient` (`[N * C]`, the gradient at the pooled means) adds
  /// `pooledGradient[q] / plane` to every `dz` of plane `q`, and `centredPlaneMeans` are the
  /// planes' means of `x - mean[c]`. `dx` may be `dz` (in place).
  func batchNormAfterACONBackward(
    _ x: Tensor, dz: Tensor, normSums: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor,
    training: Bool, pooledGradient: Tensor?, centredPlaneMeans: Tensor?, inputGradient dx: Tensor?,
    weightGradient dw: Tensor, biasGradient db: Tensor)
  /// `(a - b) sigmoid(a - b) + b`.
  func smoothMaximumForward(_ a: Tensor, _ b: Tensor, into out: Tensor)
  /// The gradients of ``smoothMaximumForward(_:_:into:)``.
  func smoothMaximumBackward(
    _ a: Tensor, _ b: Tensor, gradient g: Tensor, aGradient da: Tensor, bGradient db: Tensor)
  /// meta-ACON with the pixel-wise generator: `beta = sigmoid(weight[c] x + bias[c])`.
  func pixelAconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor, gate: ACONGate,
    into out: Tensor)
  /// The gradients of ``pixelAconForward(_:p1:p2:weight:bias:gate:into:)``.
  func pixelAconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor,
    gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor,
    weightGradient dw: Tensor, biasGradient db: Tensor)
  /// `out[q * plane + i] += scale * values[q]`, in place (meta-ACON's generator gradient).
  func addPlaneConstants(_ values: Tensor, scale: Float, planes: Int, plane: Int, to out: Tensor)

  // MARK: Loss, dropout, optimizers

  /// Mean softmax cross-entropy of `logits` `[N, K]` with label smoothing `epsilon`; writes the
  /// softmax probabilities (`[N, K]`) for the backward.
  func crossEntropyForward(
    _ logits: Tensor, labels: [Int], labelSmoothing epsilon: Float, probabilities: Tensor
  ) -> Float
  /// `dx = (probabilities - target) * scale`.
  func crossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing epsilon: Float, scale: Float,
    into dx: Tensor)
  /// A keep-mask for `count` elements, each dropped with `probability`, from one `seed`.
  func dropoutMask(count: Int, probability: Float, seed: UInt64) -> DropoutMask
  /// `out = x * scale` where the mask keeps, else 0.
  func applyDropout(_ x: Tensor, mask: DropoutMask, scale: Float, into out: Tensor)
  /// One SGD step in place (see ``Parameter/sgdStep(gradient:momentumBuffer:learningRate:momentum:weightDecay:firstStep:)``).
  func sgdStep(
    parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, learningRate: Float,
    momentum: Float, weightDecay: Float, firstStep: Bool)
  /// One Adam / AdamW step in place (see ``Parameter/adamStep(gradient:firstMoment:secondMoment:learningRate:beta1:beta2:epsilon:weightDecay:decoupled:step:)``).
  func adamStep(
    parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor,
    learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float,
    decoupled: Bool, step: Int)
}

/// A broadcasting binary operation.
public enum BinaryOperation: Sendable {
  case add, subtract, multiply
}

/// A dropout keep-mask: one bit per element, in host memory.
public final class DropoutMask: @unchecked Sendable {
  /// The bits, 64 elements per word; bit `i % 64` of word `i / 64` keeps element `i`.
  package let bits: UnsafeMutablePointer<UInt64>
  /// Number of words.
  public let words: Int
  /// Number of elements the mask covers.
  public let count: Int

  /// An undefined mask for `count` elements.
  package init(count: Int) {
    self.count = count
    words = (count + 63) / 64
    bits = .allocate(capacity: max(words, 1))
  }

  deinit { bits.deallocate() }
}

extension ComputeBackend {
  public func fusesMaxPoolAfterBatchNormACON(_ x: Tensor, pool: PoolGeometry) -> Bool { false }

  public func aconAfterBatchNormMaxPoolForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, pool: PoolGeometry, into pooled: Tensor,
    indices: Tensor
  ) {
    let activated = x.empty(x.shape)
    aconAfterBatchNormForward(
      x, scale: scale, shift: shift, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate,
      into: activated)
    maxPoolForward(
      activated, planes: x.shape[0] * x.shape[1], geometry: pool, into: pooled, indices: indices)
  }

  public func aconAfterBatchNormBackward(
    _ x: Tensor, pooledGradient: Tensor, indices: Tensor, pool: PoolGeometry, scale: Tensor,
    shift: Tensor, mean: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor, normSums: Tensor,
    p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let gradient = x.empty(x.shape)
    maxPoolBackward(
      pooledGradient, indices: indices, planes: x.shape[0] * x.shape[1], geometry: pool,
      into: gradient)
    aconAfterBatchNormBackward(
      x, gradient: gradient, scale: scale, shift: shift, mean: mean, p1: p1, p2: p2, beta: beta,
      layout: layout, gate: gate, dz: dz, normSums: normSums, p1Gradient: dp1, p2Gradient: dp2,
      betaGradient: dbeta)
  }
}
