import ACONTensor
import Foundation

/// MNIST-style data in IDX files (MNIST, Fashion-MNIST, KMNIST): 8-bit grayscale images with
/// one label byte each. Files may be gzip-compressed or raw.
///
/// Every check of the format is made when loading (magic, number of dimensions, byte count
/// against the header, image and label counts, label range), so a bad file is reported once with
/// its path instead of surfacing as a crash in training.
public struct IDXDataSet: DataSet {
  /// Number of images.
  public let count: Int
  /// Image height.
  public let rows: Int
  /// Image width.
  public let columns: Int
  /// Number of classes.
  public let classCount: Int
  /// All pixels, image after image, row-major.
  public let images: [UInt8]
  /// All labels.
  public let labels: [UInt8]

  /// Which half of a standard IDX data set.
  public enum Split: String, Sendable {
    case train
    case test

    /// The file-name prefix the MNIST distribution uses for this split.
    var filePrefix: String { self == .train ? "train" : "t10k" }
  }

  /// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
  public static let defaultFashionMNISTRoot = "/usr/share/datasets/fashion-mnist"

  /// Loads a split from `root`, which holds `train-images-idx3-ubyte[.gz]` and its siblings
  /// (the names shared by MNIST and Fashion-MNIST); the gzip file is used when present.
  public init(root: String = IDXDataSet.defaultFashionMNISTRoot, split: Split, classCount: Int = 10)
    throws
  {
    func pick(_ name: String) -> String {
      let base = (root as NSString).appendingPathComponent(name)
      let gz = base + ".gz"
      if FileManager.default.fileExists(atPath: gz) { return gz }
      if FileManager.default.fileExists(atPath: base) { return base }
      return gz
    }
    try self.init(
      imagesPath: pick("\(split.filePrefix)-images-idx3-ubyte"),
      labelsPath: pick("\(split.filePrefix)-labels-idx1-ubyte"), classCount: classCount)
  }

  /// Loads an images file (`idx3`) and a labels file (`idx1`), each gzip-compressed or raw.
  public init(imagesPath: String, labelsPath: String, classCount: Int = 10) throws {
    let imageBytes = try FileBytes.read(imagesPath)
    let imageDims = try Self.parseHeader(
      imageBytes, path: imagesPath, dimensions: 3, what: "images")
    let labelBytes = try FileBytes.read(labelsPath)
    let labelDims = try Self.parseHeader(
      labelBytes, path: labelsPath, dimensions: 1, what: "labels")
    guard imageDims[0] == labelDims[0] else {
      throw TensorError.invalidFile(
        path: labelsPath,
        detail: "holds \(labelDims[0]) labels but \(imagesPath) holds \(imageDims[0]) images")
    }
    let labels = Array(labelBytes[8...])
    if let i = labels.firstIndex(where: { Int($0) >= classCount }) {
      throw TensorError.invalidFile(
        path: labelsPath,
        detail: "label \(labels[i]) of sample \(i) is outside 0..<\(classCount)")
    }
    self.count = imageDims[0]
    self.rows = imageDims[1]
    self.columns = imageDims[2]
    self.classCount = classCount
    self.images = Array(imageBytes[16...])
    self.labels = labels
  }

  /// Checks an IDX header of unsigned bytes with `dimensions` dimensions against the file size;
  /// returns the dimensions.
  static func parseHeader(_ bytes: [UInt8], path: String, dimensions: Int, what: String) throws
    -> [Int]
  {
    let expectedMagic = 0x0800 | dimensions
    guard bytes.count >= 4 else {
      throw TensorError.invalidFile(
        path: path, detail: "file of \(bytes.count) bytes is too short for an IDX header")
    }
    let magic = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
    let hex = { (v: Int) in "0x" + String(format: "%08X", v) }
    guard bytes[0] == 0, bytes[1] == 0 else {
      throw TensorError.invalidFile(
        path: path,
        detail:
          "wrong magic \(hex(magic)): not an IDX file (expected \(hex(expectedMagic)) for \(what))")
    }
    guard bytes[2] == 0x08 else {
      throw TensorError.invalidFile(
        path: path,
        detail:
          "wrong magic \(hex(magic)): element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (expected \(hex(expectedMagic)) for \(what))"
      )
    }
    guard Int(bytes[3]) == dimensions else {
      throw TensorError.invalidFile(
        path: path,
        detail:
          "wrong magic \(hex(magic)): \(bytes[3]) dimensions, but \(what) have \(dimensions) (expected \(hex(expectedMagic)))"
      )
    }
    let headerSize = 4 + 4 * dimensions
    guard bytes.count >= headerSize else {
      throw TensorError.invalidFile(
        path: path, detail: "truncated header: \(bytes.count) bytes, need \(headerSize)")
    }
    var dims: [Int] = []
    for d in 0..<dimensions {
      let o = 4 + 4 * d
      dims.append(
        Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
    }
    // Each size is below 2^32, so three of them can overflow Int: multiply with a check, and
    // compare with the bytes actually there before anything is allocated.
    var expected = 1
    for d in dims {
      let (product, overflow) = expected.multipliedReportingOverflow(by: d)
      guard !overflow else {
        throw TensorError.invalidFile(
          path: path,
          detail:
            "header says \(dims.map(String.init).joined(separator: " x ")): more data bytes than a file can hold"
        )
      }
      expected = product
    }
    let actual = bytes.count - headerSize
    guard actual == expected else {
      let shape = dims.map(String.init).joined(separator: " x ")
      throw TensorError.invalidFile(
        path: path,
        detail: "header says \(shape) = \(expected) data bytes but the file holds \(actual)"
          + (actual < expected ? " (truncated)" : " (trailing bytes)"))
    }
    return dims
  }

  public func sample(_ index: Int) throws -> (image: PixelImage, label: Int) {
    let n = rows * columns
    let start = index * n
    return (
      PixelImage(
        width: columns, height: rows, channels: 1, pixels: Array(images[start..<start + n])),
      Int(labels[index])
    )
  }
}
