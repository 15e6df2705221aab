import ACONTensor
import Foundation

/// CIFAR-10 and CIFAR-100 in their binary distribution: records of label byte(s) followed by a
/// 32x32 image stored as three planes (R, G, B).
public struct CIFARDataSet: DataSet {
  /// The two CIFAR variants and, for CIFAR-100, which of its labels to use.
  public enum Variant: Sendable, Equatable {
    /// 1 label byte per record, 10 classes.
    case cifar10
    /// 2 label bytes per record (coarse then fine); `fine` picks the 100-class label, otherwise
    /// the 20-class superclass.
    case cifar100(fine: Bool)

    var labelBytes: Int { self == .cifar10 ? 1 : 2 }
    /// Number of classes of the label in use.
    public var classCount: Int {
      switch self {
      case .cifar10: return 10
      case .cifar100(let fine): return fine ? 100 : 20
      }
    }
  }

  /// Pixels per record: 3 planes of 32x32.
  public static let imageBytes = 3 * 32 * 32

  /// The variant read.
  public let variant: Variant
  /// Number of records.
  public let count: Int
  /// Image planes, record after record (3072 bytes each: R plane, G plane, B plane).
  public let images: [UInt8]
  /// The label in use for each record.
  public let labels: [UInt8]
  public var classCount: Int { variant.classCount }

  /// Loads and concatenates the given record files, checking sizes and labels.
  public init(files: [String], variant: Variant) throws {
    let recordSize = variant.labelBytes + Self.imageBytes
    var images: [UInt8] = []
    var labels: [UInt8] = []
    for path in files {
      let bytes = try FileBytes.read(path)
      guard !bytes.isEmpty, bytes.count % recordSize == 0 else {
        throw TensorError.invalidFile(
          path: path,
          detail: "size \(bytes.count) is not a whole number of \(recordSize)-byte records")
      }
      let n = bytes.count / recordSize
      images.reserveCapacity(images.count + n * Self.imageBytes)
      for r in 0..<n {
        let base = r * recordSize
        for l in 0..<variant.labelBytes {
          let limit = l == 0 && variant != .cifar10 ? 20 : (variant == .cifar10 ? 10 : 100)
          if Int(bytes[base + l]) >= limit {
            let name = variant == .cifar10 ? "label" : (l == 0 ? "coarse label" : "fine label")
            throw TensorError.invalidFile(
              path: path,
              detail: "\(name) \(bytes[base + l]) of record \(r) is outside 0..<\(limit)")
          }
        }
        let used = variant == .cifar100(fine: true) ? bytes[base + 1] : bytes[base]
        labels.append(used)
        images.append(contentsOf: bytes[(base + variant.labelBytes)..<(base + recordSize)])
      }
    }
    self.variant = variant
    self.count = labels.count
    self.images = images
    self.labels = labels
  }

  /// Loads a standard split from the directory of the binary distribution
  /// (`cifar-10-batches-bin` with `data_batch_1.bin`..`data_batch_5.bin` and `test_batch.bin`,
  /// or `cifar-100-binary` with `train.bin` and `test.bin`).
  public init(root: String, train: Bool, variant: Variant = .cifar10) throws {
    let names: [String]
    switch variant {
    case .cifar10:
      names = train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
    case .cifar100:
      names = [train ? "train.bin" : "test.bin"]
    }
    try self.init(
      files: names.map { (root as NSString).appendingPathComponent($0) }, variant: variant)
  }

  public func sample(_ index: Int) throws -> (image: PixelImage, label: Int) {
    let plane = 32 * 32
    var pixels = [UInt8](repeating: 0, count: Self.imageBytes)
    let base = index * Self.imageBytes
    images.withUnsafeBufferPointer { src in
      for i in 0..<plane {
        for c in 0..<3 { pixels[i * 3 + c] = src[base + c * plane + i] }
      }
    }
    return (PixelImage(width: 32, height: 32, channels: 3, pixels: pixels), Int(labels[index]))
  }
}
