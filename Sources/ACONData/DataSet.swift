import ACONTensor

/// A data set of labelled images, read by index.
///
/// Implementations must be safe to read from several threads at once: the loader decodes a
/// batch's samples in parallel.
public protocol DataSet: Sendable {
  /// Number of samples.
  var count: Int { get }
  /// Number of classes; labels are in `0..<classCount`.
  var classCount: Int { get }
  /// The image and label of sample `index` (`0..<count`).
  func sample(_ index: Int) throws -> (image: PixelImage, label: Int)
}

extension DataSet {
  /// The first `n` samples (all of them when `n >= count`), for quick runs and tests.
  public func prefix(_ n: Int) -> SubsetDataSet<Self> {
    SubsetDataSet(self, indices: Array(0..<max(0, min(n, count))))
  }

  /// The samples at `indices`, in that order.
  public func subset(_ indices: [Int]) throws -> SubsetDataSet<Self> {
    if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
      throw TensorError.invalidArgument(
        operation: "DataSet.subset", detail: "index \(bad) is outside 0..<\(count)")
    }
    return SubsetDataSet(self, indices: indices)
  }
}

/// A view of some samples of another data set.
public struct SubsetDataSet<Base: DataSet>: DataSet {
  /// The data set the samples come from.
  public let base: Base
  /// Indices into `base`.
  public let indices: [Int]

  init(_ base: Base, indices: [Int]) {
    self.base = base
    self.indices = indices
  }

  public var count: Int { indices.count }
  public var classCount: Int { base.classCount }
  public func sample(_ index: Int) throws -> (image: PixelImage, label: Int) {
    try base.sample(indices[index])
  }
}
