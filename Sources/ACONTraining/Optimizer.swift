import ACONNN
import ACONTensor

/// A set of parameters that share hyper-parameters (the reference recipe uses two: conv and
/// linear weights with weight decay, everything else without).
public struct ParameterGroup {
  /// The parameters with their dotted names.
  public var parameters: [(name: String, parameter: Parameter)]
  /// Weight decay for this group.
  public var weightDecay: Float

  public init(parameters: [(name: String, parameter: Parameter)], weightDecay: Float) {
    self.parameters = parameters
    self.weightDecay = weightDecay
  }

  /// The reference recipe's grouping: parameters marked `decays` (conv and linear weights) get
  /// `weightDecay`; p1, p2, beta, batch-norm parameters and biases get none.
  public static func referenceGroups(of model: Module, weightDecay: Float) -> [ParameterGroup] {
    let named = model.namedParameters().filter { $0.1.isTrainable }.map {
      (name: $0.0, parameter: $0.1)
    }
    return [
      ParameterGroup(parameters: named.filter { $0.parameter.decays }, weightDecay: weightDecay),
      ParameterGroup(parameters: named.filter { !$0.parameter.decays }, weightDecay: 0),
    ]
  }
}

/// What every optimizer offers: a step with a given learning rate, and its state for checkpoints.
public protocol Optimizer: AnyObject {
  /// The parameter groups the optimizer updates.
  var groups: [ParameterGroup] { get }
  /// Updates every parameter that has a gradient, using learning rate `learningRate`.
  func step(learningRate: Float)
  /// The optimizer's per-parameter state as named tensors (for checkpoints).
  func stateTensors() -> [(String, Tensor)]
  /// Restores what `stateTensors()` returned; throws if names or shapes differ.
  func loadState(_ tensors: [String: Tensor]) throws
  /// Scalars of the state (step counts) for checkpoint metadata.
  var stepCount: Int { get set }
}

extension Optimizer {
  /// Every parameter the optimizer updates.
  public var allParameters: [(name: String, parameter: Parameter)] {
    groups.flatMap(\.parameters)
  }

  /// Clears the gradients of every parameter the optimizer updates.
  public func zeroGrad() {
    for (_, p) in allParameters { p.zeroGrad() }
  }

  /// One step's walk: counts the step, then calls `update` for every parameter that has a
  /// gradient, in group order, with its group, its gradient and its key in per-parameter state.
  func forEachGradient(_ update: (ParameterGroup, Parameter, Tensor, ObjectIdentifier) -> Void) {
    stepCount += 1
    for group in groups {
      for (_, p) in group.parameters {
        guard let g = p.grad else { continue }
        update(group, p, g, ObjectIdentifier(p))
      }
    }
  }

  func restore(
    _ tensors: [String: Tensor], into slots: inout [ObjectIdentifier: Tensor], prefix: String
  ) throws {
    for (name, p) in allParameters {
      guard let t = tensors[prefix + name] else { continue }
      guard t.shape == p.value.shape else {
        throw TensorError.shapeMismatch(
          operation: "optimizer state \(prefix + name)", shapes: [t.shape, p.value.shape],
          detail: "checkpoint and model disagree")
      }
      slots[ObjectIdentifier(p)] = t.copy()
    }
  }
}

/// Stochastic gradient descent with momentum, exactly as PyTorch's `torch.optim.SGD`
/// (dampening 0, no Nesterov).
public final class SGD: Optimizer {
  public let groups: [ParameterGroup]
  public let momentum: Float
  public var stepCount = 0
  private var buffers: [ObjectIdentifier: Tensor] = [:]

  public init(groups: [ParameterGroup], momentum: Float = 0.9) {
    self.groups = groups
    self.momentum = momentum
  }

  public func step(learningRate: Float) {
    forEachGradient { group, p, g, key in
      var first = false
      if momentum != 0, buffers[key] == nil {
        buffers[key] = Tensor.zeros(p.value.shape)
        first = true
      }
      p.sgdStep(
        gradient: g, momentumBuffer: buffers[key], learningRate: learningRate,
        momentum: momentum, weightDecay: group.weightDecay, firstStep: first)
    }
  }

  public func stateTensors() -> [(String, Tensor)] {
    allParameters.compactMap { name, p in
      buffers[ObjectIdentifier(p)].map { ("momentum_buffer." + name, $0) }
    }
  }

  public func loadState(_ tensors: [String: Tensor]) throws {
    buffers = [:]
    try restore(tensors, into: &buffers, prefix: "momentum_buffer.")
  }
}

/// Adam (`decoupled: false`, L2 weight decay added to the gradient) and AdamW (`decoupled: true`),
/// as PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`.
public final class Adam: Optimizer {
  public let groups: [ParameterGroup]
  public let beta1: Float
  public let beta2: Float
  public let epsilon: Float
  public let decoupled: Bool
  public var stepCount = 0
  private var first: [ObjectIdentifier: Tensor] = [:]
  private var second: [ObjectIdentifier: Tensor] = [:]

  public init(
    groups: [ParameterGroup], beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
    decoupled: Bool = false
  ) {
    self.groups = groups
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.decoupled = decoupled
  }

  public func step(learningRate: Float) {
    forEachGradient { group, p, g, key in
      if first[key] == nil {
        first[key] = Tensor.zeros(p.value.shape)
        second[key] = Tensor.zeros(p.value.shape)
      }
      p.adamStep(
        gradient: g, firstMoment: first[key]!, secondMoment: second[key]!,
        learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
        weightDecay: group.weightDecay, decoupled: decoupled, step: stepCount)
    }
  }

  public func stateTensors() -> [(String, Tensor)] {
    allParameters.flatMap { name, p -> [(String, Tensor)] in
      guard let m = first[ObjectIdentifier(p)], let v = second[ObjectIdentifier(p)] else {
        return []
      }
      return [("exp_avg." + name, m), ("exp_avg_sq." + name, v)]
    }
  }

  public func loadState(_ tensors: [String: Tensor]) throws {
    first = [:]
    second = [:]
    try restore(tensors, into: &first, prefix: "exp_avg.")
    try restore(tensors, into: &second, prefix: "exp_avg_sq.")
  }
}
