import ACONKernels

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One recorded operation of the gradient tape: the nodes of its inputs and a pullback that
/// maps the gradient of its output to the gradients of its inputs.
///
/// Each pullback keeps only what it needs (often just the input), and the tape drops every
/// pullback as soon as `backward` has used it, so saved tensors return to the pool at once.
public final class GradNode {
  /// The nodes of the inputs, in the order the pullback returns their gradients.
  let inputs: [GradNode?]
  /// How the output gradient becomes the inputs' gradients; nil once `backward` has used it.
  var pullback: Pullback?
  /// The gradient accumulated so far during a backward pass.
  var grad: Tensor?
  /// For a leaf: where its gradient goes.
  weak var parameter: Parameter?
  /// The name of the operation, for error messages and debugging.
  public let operation: String

  /// A recorded op's map from its output gradient to its inputs'.
  @usableFromInline enum Pullback {
    /// One gradient per input (nil where an input needs none), added to what they have.
    case gradients((Tensor) throws -> [Tensor?])
    /// An op that can add its first input's gradient into that input's gradient in place
    /// (``Tensor/record(_:output:input:accumulating:)``,
    /// ``Tensor/record(_:output:inputs:accumulatingFirst:)``): one gradient per input, the
    /// first with `soFar` added.
    case accumulating((_ upstream: Tensor, _ soFar: Tensor?) throws -> [Tensor?])
  }

  init(operation: String, inputs: [GradNode?], pullback: Pullback) {
    self.operation = operation
    self.inputs = inputs
    self.pullback = pullback
  }

  init(leaf parameter: Parameter) {
    self.operation = "leaf"
    self.inputs = []
    self.pullback = nil
    self.parameter = parameter
  }
}

/// A trainable tensor with a stable identity: layers own parameters, optimizers update them
/// in place, and `backward` accumulates into `grad`.
public final class Parameter {
  /// The current value; it carries a leaf node, so every use of it records gradients.
  public var value: Tensor {
    didSet { attachLeaf() }
  }
  /// The gradient accumulated by `backward` calls since the last `zeroGrad`.
  public var grad: Tensor?
  /// Whether weight decay applies (true for conv and linear weights only in the reference recipe).
  public var decays: Bool
  /// Whether the parameter is trained at all.
  public var isTrainable: Bool = true {
    didSet { attachLeaf() }
  }

  /// A parameter holding `value`.
  public init(_ value: Tensor, decays: Bool = false) {
    self.value = value.copy()
    self.decays = decays
    attachLeaf()
  }

  private func attachLeaf() {
    if isTrainable {
      if value.node?.parameter !== self { value.node = GradNode(leaf: self) }
    } else if value.node != nil {
      value.node = nil
    }
  }

  /// Forgets the accumulated gradient.
  public func zeroGrad() { grad = nil }

  /// Updates the value in place. The parameter owns its storage (it copies what it is given).
  package func update(_ body: (UnsafeMutablePointer<Float>, Int) -> Void) {
    body(value.mutableData, value.count)
  }

  fileprivate func accumulate(_ g: Tensor) {
    if let existing = grad {
      grad = Tensor.addRaw(existing, g)
    } else {
      grad = g.detached
    }
  }
}

/// Whether operations record gradients; off inside `withoutGradients`.
///
/// The switch is a task-local value, so that an evaluation on one thread (a data loader, a test
/// running beside another) does not stop recording on another.
public enum GradientMode {
  @TaskLocal static var recording = true

  /// True when operations on the calling thread record the tape.
  public static var isEnabled: Bool { recording }
}

/// Runs `body` without recording gradients (evaluation, metrics, optimizer updates).
public func withoutGradients<T>(_ body: () throws -> T) rethrows -> T {
  try GradientMode.$recording.withValue(false, operation: body)
}

extension Tensor {
  /// Attaches a tape entry to `output` if any input records gradients; `pullback` returns
  /// one gradient per input, in order.
  @inlinable
  public static func record(
    _ operation: String, output: Tensor, inputs: [Tensor],
    pullback: @escaping (Tensor) throws -> [Tensor?]
  ) -> Tensor {
    recordEntry(operation, output: output, inputs: inputs, pullback: .gradients(pullback))
  }

  @usableFromInline
  static func recordEntry(
    _ operation: String, output: Tensor, inputs: [Tensor], pullback: GradNode.Pullback
  ) -> Tensor {
    if Profiler.isEnabled {
      let elements = inputs.reduce(output.count) { $0 + $1.count }
      Profiler.forwardMark(operation, bytes: Double(4 * elements))
    }
    guard GradientMode.isEnabled, inputs.contains(where: { $0.node != nil }) else {
      return output
    }
    var out = output
    out.node = GradNode(
      operation: operation, inputs: inputs.map { $0.node }, pullback: pullback)
    return out
  }

  /// Attaches a tape entry to `output` of an op of one input whose pullback can add its gradient
  /// into the input's gradient in place: `accumulating(upstream, soFar)` returns the input's
  /// gradient with this op's added, where `soFar` is the input's gradient from the ops that ran
  /// before (to be updated and returned) or nil (return this op's gradient alone). `backward`
  /// passes `soFar` only when nothing else holds its storage, and otherwise adds the two itself.
  ///
  /// For ops whose gradient is zero on part of the input (ShuffleNetV2's channel split): each
  /// writes its part into one tensor instead of every op filling a whole tensor of zeros that
  /// `backward` then adds up.
  public static func record(
    _ operation: String, output: Tensor, input: Tensor,
    accumulating: @escaping (_ upstream: Tensor, _ soFar: Tensor?) throws -> Tensor
  ) -> Tensor {
    recordEntry(
      operation, output: output, inputs: [input],
      pullback: .accumulating { upstream, soFar in [try accumulating(upstream, soFar)] })
  }

  /// Attaches a tape entry to `output` of an op whose pullback can add its first input's
  /// gradient into that input's gradient in place: `accumulatingFirst(upstream, soFar)` returns
  /// one gradient per input (nil where none is needed), the first with `soFar` added as in
  /// ``record(_:output:input:accumulating:)``; the others are added to their inputs' gradients
  /// as any op's.
  ///
  /// For a convolution whose input also feeds another op (a residual block's input): its input
  /// gradient lands in the gradient already there, with no separate add.
  public static func record(
    _ operation: String, output: Tensor, inputs: [Tensor],
    accumulatingFirst: @escaping (_ upstream: Tensor, _ soFar: Tensor?) throws -> [Tensor?]
  ) -> Tensor {
    recordEntry(
      operation, output: output, inputs: inputs, pullback: .accumulating(accumulatingFirst))
  }

  /// Adds each gradient to its input's gradient (or makes it the input's gradient).
  private static func addGradients(_ grads: ArraySlice<Tensor?>, to inputs: ArraySlice<GradNode?>) {
    for (input, grad) in zip(inputs, grads) {
      guard let input, let grad else { continue }
      if let existing = input.grad {
        input.grad = Tensor.addRaw(existing, grad)
      } else {
        input.grad = grad.detached
      }
    }
  }

  /// Whether this tensor's storage has no other holder (its data may be updated in place).
  mutating func holdsStorageAlone() -> Bool { isKnownUniquelyReferenced(&storage) }

  /// Back-propagates from this tensor, seeding it with `seed` (ones by default: the gradient of
  /// a sum), and accumulates into the `grad` of every parameter it depends on.
  ///
  /// `parameterGradientReady` is called once per parameter, as soon as its gradient is complete
  /// (the tape's order: roughly the reverse of the forward), while the rest of the backward is
  /// still to run; data parallelism starts reducing gradients there.
  ///
  /// - Throws: `TensorError` when this tensor records no gradients or `seed` has another shape,
  ///   and whatever a pullback throws (the fused meta-ACON ops back-propagate through their
  ///   generator's own tape inside their pullback).
  public func backward(
    seed: Tensor? = nil, parameterGradientReady: ((Parameter) -> Void)? = nil
  ) throws {
    guard let root = node else {
      throw TensorError.invalidArgument(
        operation: "backward", detail: "the tensor does not depend on any trainable parameter")
    }
    let g = seed ?? Tensor(shape: shape, repeating: 1, device: device)
    guard g.shape == shape else {
      throw TensorError.shapeMismatch(
        operation: "backward", shapes: [shape, g.shape], detail: "seed must match the output")
    }
    // Reverse topological order by an iterative depth-first search.
    var order: [GradNode] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(GradNode, Int)] = [(root, 0)]
    visited.insert(ObjectIdentifier(root))
    while let (n, i) = stack.popLast() {
      if i < n.inputs.count {
        stack.append((n, i + 1))
        if let child = n.inputs[i], !visited.contains(ObjectIdentifier(child)) {
          visited.insert(ObjectIdentifier(child))
          stack.append((child, 0))
        }
      } else {
        order.append(n)
      }
    }
    root.grad = g
    for n in order.reversed() {
      guard let upstream = n.grad else { continue }
      n.grad = nil
      if let parameter = n.parameter {
        parameter.accumulate(upstream)
        parameterGradientReady?(parameter)
        continue
      }
      guard let pullback = n.pullback else { continue }
      n.pullback = nil
      let start = Profiler.isEnabled ? Profiler.now() : 0
      let grads: [Tensor?]
      switch pullback {
      case .accumulating(let accumulating):
        let first = n.inputs[0]
        var soFar = first?.grad
        first?.grad = nil
        let shared = soFar?.holdsStorageAlone() == false
        grads = try accumulating(upstream, shared ? nil : soFar)
        if let first {
          if let grad = grads[0] {
            first.grad = shared ? Tensor.addRaw(soFar!, grad) : grad.detached
          } else {
            first.grad = soFar
          }
        }
        Tensor.addGradients(grads.dropFirst(), to: n.inputs.dropFirst())
      case .gradients(let pullback):
        grads = try pullback(upstream)
        Tensor.addGradients(grads[...], to: n.inputs[...])
      }
      if start != 0 {
        // Upstream gradient read; each input read and its gradient written.
        let elements = grads.reduce(upstream.count) { $0 + 2 * ($1?.count ?? 0) }
        Profiler.add(
          "backward", n.operation, seconds: Double(Profiler.now() - start) / 1e9,
          bytes: Double(4 * elements))
      }
    }
  }

  /// Elementwise sum without recording, for gradient accumulation.
  static func addRaw(_ a: Tensor, _ b: Tensor) -> Tensor {
    let out = a.empty(a.shape)
    backend("add", a, b).binary(.add, a, b, into: out)
    return out
  }
}
