import ACONNN
import ACONTensor

/// Parameter and multiply-accumulate counts of a network, as the paper reports them.
public struct ModelComplexity: Sendable {
  /// One convolution or linear layer of the forward pass.
  public struct Layer: Sendable {
    /// The parameter name of the layer's weight (`features.0.branch_main.0.weight`).
    public let name: String
    public let operation: String
    public let outputShape: [Int]
    public let macs: Int
    public let parameters: Int
  }

  /// Total number of parameters (trainable tensors, not buffers).
  public let parameters: Int
  /// Multiply-accumulates of the conv and linear layers for one image: the paper's FLOPs.
  public let macs: Int
  /// The counted layers in forward order.
  public let layers: [Layer]

  /// Runs one image of `inputSize` x `inputSize` through `model` (eval mode, no gradients) and
  /// counts.
  public static func measure(_ model: Module, inputChannels: Int, inputSize: Int) throws
    -> ModelComplexity
  {
    let wasTraining = model.isTraining
    model.eval()
    defer { model.setTraining(wasTraining) }
    let named = model.namedParameters()
    var names: [ObjectIdentifier: (String, Int)] = [:]
    for (name, p) in named { names[ObjectIdentifier(p.value.storage)] = (name, p.value.count) }
    let x = Tensor.zeros([1, inputChannels, inputSize, inputSize])
    let (_, records) = try OperationCounter.counting {
      try withoutGradients { try model(x) }
    }
    let layers = records.map { r -> Layer in
      let entry = r.weightStorage.flatMap { names[$0] }
      return Layer(
        name: entry?.0 ?? "?", operation: r.operation, outputShape: r.outputShape, macs: r.macs,
        parameters: entry?.1 ?? 0)
    }
    return ModelComplexity(
      parameters: named.reduce(0) { $0 + $1.1.value.count },
      macs: layers.reduce(0) { $0 + $1.macs },
      layers: layers)
  }
}
