/// Building a ``SafeTensorsFile`` from tensors read elsewhere (PyTorch checkpoints), so every
/// command that reads weights takes one type whatever the file's format.
extension SafeTensorsFile {
  /// Tensors (Float32), the element type each had at its source, their order, and metadata.
  public init(
    tensors: [String: Tensor], dtypes: [String: SafeTensorsDType], names: [String],
    metadata: [String: String]
  ) {
    self.tensors = tensors
    self.dtypes = dtypes
    self.names = names
    self.metadata = metadata
  }
}
