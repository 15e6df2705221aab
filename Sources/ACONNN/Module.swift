import ACONTensor

/// A non-trainable tensor a module keeps in its state (BN running statistics).
public final class Buffer {
  /// The value; modules update it in place during training.
  public var value: Tensor
  /// How the buffer is stored in a weights file (`num_batches_tracked` is I64 in PyTorch).
  public let storedAsInteger: Bool

  public init(_ value: Tensor, storedAsInteger: Bool = false) {
    self.value = value.copy()
    self.storedAsInteger = storedAsInteger
  }

  /// Adds `amount` to the value in place (a counter such as `num_batches_tracked`).
  public func increment(by amount: Float = 1) { value.incrementInPlace(by: amount) }
}

/// The base of every layer and network, like PyTorch's `nn.Module`.
///
/// A module registers its parameters, buffers and children by name, in the order PyTorch's
/// reference registers them, so that `namedParameters()` and `stateDict()` give the reference's
/// checkpoint keys (`features.3.branch_main.0.weight`) in the reference's order.
open class Module: CustomStringConvertible {
  /// Whether the module is in training mode (batch statistics, dropout) or evaluation mode.
  public private(set) var isTraining = true
  private var ownParameters: [(String, Parameter)] = []
  private var ownBuffers: [(String, Buffer)] = []
  private var ownChildren: [(String, Module)] = []

  public init() {}

  /// The computation. Subclasses override it.
  open func forward(_ x: Tensor) throws -> Tensor {
    throw TensorError.invalidArgument(
      operation: String(describing: type(of: self)), detail: "forward is not implemented")
  }

  /// Runs `forward`.
  public func callAsFunction(_ x: Tensor) throws -> Tensor { try forward(x) }

  /// Registers a parameter under `name` and returns it.
  @discardableResult
  public func register(parameter: Parameter, as name: String) -> Parameter {
    ownParameters.append((name, parameter))
    return parameter
  }

  /// Registers a buffer under `name` and returns it.
  @discardableResult
  public func register(buffer: Buffer, as name: String) -> Buffer {
    ownBuffers.append((name, buffer))
    return buffer
  }

  /// Registers a child module under `name` and returns it.
  @discardableResult
  public func register<M: Module>(_ child: M, as name: String) -> M {
    ownChildren.append((name, child))
    return child
  }

  /// Direct children with their names.
  public var namedChildren: [(String, Module)] { ownChildren }

  /// Every parameter of this module and its descendants with its dotted name, in PyTorch order.
  public func namedParameters(prefix: String = "") -> [(String, Parameter)] {
    var result = ownParameters.map { (prefix + $0.0, $0.1) }
    for (name, child) in ownChildren {
      result += child.namedParameters(prefix: prefix + name + ".")
    }
    return result
  }

  /// Every parameter, in order.
  public var parameters: [Parameter] { namedParameters().map(\.1) }

  /// Every buffer with its dotted name.
  public func namedBuffers(prefix: String = "") -> [(String, Buffer)] {
    var result = ownBuffers.map { (prefix + $0.0, $0.1) }
    for (name, child) in ownChildren {
      result += child.namedBuffers(prefix: prefix + name + ".")
    }
    return result
  }

  /// Every module of the tree with its dotted name (the root has the name "").
  public func namedModules(prefix: String = "") -> [(String, Module)] {
    var result: [(String, Module)] = [(prefix, self)]
    for (name, child) in ownChildren {
      let p = prefix.isEmpty ? name : prefix + "." + name
      result += child.namedModules(prefix: p)
    }
    return result
  }

  /// The state in PyTorch's `state_dict()` order: per module, its parameters, its buffers,
  /// then its children.
  public func stateEntries(prefix: String = "") -> [StateEntry] {
    var result: [StateEntry] = ownParameters.map { .parameter(prefix + $0.0, $0.1) }
    result += ownBuffers.map { .buffer(prefix + $0.0, $0.1) }
    for (name, child) in ownChildren {
      result += child.stateEntries(prefix: prefix + name + ".")
    }
    return result
  }

  /// Switches this module and its descendants to training mode.
  public func train() { setTraining(true) }
  /// Switches this module and its descendants to evaluation mode.
  public func eval() { setTraining(false) }

  /// Sets the mode of the whole tree.
  public func setTraining(_ training: Bool) {
    isTraining = training
    for (_, child) in ownChildren { child.setTraining(training) }
  }

  /// Forgets every accumulated gradient.
  public func zeroGrad() {
    for p in parameters { p.zeroGrad() }
  }

  /// Total number of parameter elements.
  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

  /// The layer's settings for ``Module/description``, as PyTorch's `extra_repr`: `"3, 24,
  /// kernel_size=3, stride=2"` for a convolution. Layers with settings override it; the
  /// default is none.
  open var settingsDescription: String { "" }

  /// The module tree as `print(model)` shows it: each module's type, its settings and its
  /// own parameters' shapes, children indented under their names (the keys of `stateDict`),
  /// and at the root the total parameter count.
  ///
  ///     ShuffleNetV2(
  ///       (first_conv): Sequential(
  ///         (0): Conv2d(3, 24, kernel_size=3, stride=2, padding=1; weight [24, 3, 3, 3])
  ///         ...
  ///     ) 1,380,176 parameters
  public var description: String {
    var lines: [String] = []
    describeTree(name: nil, depth: 0, into: &lines)
    let total = parameterCount.formatted(.number.grouping(.automatic))
    lines[lines.count - 1] += ", \(total) parameters"
    return lines.joined(separator: "\n")
  }

  private func describeTree(name: String?, depth: Int, into lines: inout [String]) {
    let indent = String(repeating: "  ", count: depth)
    let label = name.map { "(\($0)): " } ?? ""
    let parameters = ownParameters.map { "\($0.0) \(describeShape($0.1.value.shape))" }
    let details = [settingsDescription, parameters.joined(separator: ", ")]
      .filter { !$0.isEmpty }.joined(separator: "; ")
    let type = String(describing: Swift.type(of: self))
    if ownChildren.isEmpty {
      lines.append("\(indent)\(label)\(type)(\(details))")
      return
    }
    lines.append("\(indent)\(label)\(type)(\(details)")
    for (childName, child) in ownChildren {
      child.describeTree(name: childName, depth: depth + 1, into: &lines)
    }
    lines.append("\(indent))")
  }
}

/// `[24, 3, 3, 3]`; `[]` for a scalar.
private func describeShape(_ shape: [Int]) -> String {
  "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

/// One entry of a module's state: a parameter or a buffer with its dotted name.
public enum StateEntry {
  case parameter(String, Parameter)
  case buffer(String, Buffer)

  /// The dotted name.
  public var name: String {
    switch self {
    case .parameter(let n, _), .buffer(let n, _): return n
    }
  }

  /// The current value.
  public var value: Tensor {
    switch self {
    case .parameter(_, let p): return p.value
    case .buffer(_, let b): return b.value
    }
  }
}

/// Children applied in order; their names are "0", "1", ..., as in `nn.Sequential`.
public final class Sequential: Module {
  public let layers: [Module]

  public init(_ layers: [Module]) {
    self.layers = layers
    super.init()
    for (i, layer) in layers.enumerated() { register(layer, as: String(i)) }
  }

  /// Runs the layers in order; a batch norm and the activation after it run as one fused op
  /// where one exists, a convolution before a training-mode batch norm gives its bias the
  /// exact zero gradient without summing it (``Conv2d/forward(_:before:)``), a training-mode
  /// batch norm folds into the 1x1 convolution after it (``Conv2d/forward(_:after:before:)``),
  /// and in inference a convolution and the batch norm after it run as one convolution (see
  /// ``LayerFusion``).
  public override func forward(_ x: Tensor) throws -> Tensor {
    try forward(x, layers: layers.count)
  }

  /// `pool(self(x))`. Where the last two layers are a batch norm and an activation, the three
  /// run as ``BatchNorm2d/forward(_:then:thenMaxPool:)`` does (one op when fused).
  public func forward(_ x: Tensor, thenMaxPool pool: MaxPool2d) throws -> Tensor {
    let n = layers.count
    if n >= 2, let batchNorm = layers[n - 2] as? BatchNorm2d, layers[n - 1] is FusesAfterBatchNorm {
      return try batchNorm.forward(
        try forward(x, layers: n - 2), then: layers[n - 1], thenMaxPool: pool)
    }
    return try pool(try forward(x))
  }

  /// The first `count` layers.
  private func forward(_ x: Tensor, layers count: Int) throws -> Tensor {
    var y = x
    var i = 0
    while i < count {
      // A convolution and an evaluation-mode batch norm with no fusable activation after it
      // (that pair runs fused below) fold into one convolution in inference.
      if i + 1 < count, let conv = layers[i] as? Conv2d,
        let batchNorm = layers[i + 1] as? BatchNorm2d,
        !(i + 2 < count && layers[i + 2] is FusesAfterBatchNorm),
        let folded = try conv.forward(y, foldingEvaluation: batchNorm)
      {
        y = folded
        i += 2
      } else if i + 1 < layers.count, let conv = layers[i] as? Conv2d,
        let batchNorm = layers[i + 1] as? BatchNorm2d
      {
        // (The batch norm may lie past `count`: forward(_:thenMaxPool:) runs it next.)
        y = try conv.forward(y, before: batchNorm)
        i += 1
      } else if i + 1 < count, let batchNorm = layers[i] as? BatchNorm2d,
        let conv = layers[i + 1] as? Conv2d,
        let folded = try conv.forward(
          y, after: batchNorm, before: i + 2 < layers.count ? layers[i + 2] as? BatchNorm2d : nil)
      {
        y = folded
        i += 2
      } else if i + 1 < count, let batchNorm = layers[i] as? BatchNorm2d,
        layers[i + 1] is FusesAfterBatchNorm
      {
        y = try batchNorm.forward(y, then: layers[i + 1])
        i += 2
      } else {
        y = try layers[i](y)
        i += 1
      }
    }
    return y
  }
}
