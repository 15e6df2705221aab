import ACONData
import ACONTensor
import Foundation

/// The data sets `acon train` and `acon eval` know by name, with the input convention each uses.
public enum DataSetName: String, CaseIterable, Codable, Sendable {
  case fashionMNIST = "fashion-mnist"
  case mnist
  case cifar10
  case cifar100
  /// `root/train/<class>/*.jpg|png` and `root/val/<class>/...` (ImageNet layout).
  case imageFolder = "imagefolder"

  /// Where the data lives when `--data` is not given.
  public var defaultDirectory: String? {
    switch self {
    case .fashionMNIST: return IDXDataSet.defaultFashionMNISTRoot
    default: return nil
    }
  }

  /// Parses a name, with an error listing the valid ones.
  public static func parse(_ name: String) throws -> DataSetName {
    guard let value = DataSetName(rawValue: name.lowercased()) else {
      throw TrainingError.invalidConfiguration(
        "unknown data set '\(name)'; choose one of: "
          + allCases.map(\.rawValue).joined(separator: ", "))
    }
    return value
  }
}

/// A training and a test split with the loaders' input convention.
public struct DataSplits {
  public let train: any DataSet
  public let test: any DataSet
  public let classes: Int
  public let inputChannels: Int
  /// Side of the (square) network input.
  public let inputSize: Int
  /// Whether the network should use the small-input stem.
  public let smallInput: Bool
  public let trainTransform: any ImageTransform
  public let evalTransform: any ImageTransform
  /// 1/255 for the small data sets (inputs in 0..1); 1 for image folders (the reference's
  /// raw 0..255 BGR input).
  public let scale: Float
  public let channelOrder: ChannelOrder

  /// Opens the named data set under `directory` (or its default location); `limit` keeps the
  /// first samples of each split, for quick runs.
  public static func open(
    _ name: DataSetName, directory: String?, trainLimit: Int? = nil, testLimit: Int? = nil,
    augment: Bool = true
  ) throws -> DataSplits {
    guard let root = directory ?? name.defaultDirectory else {
      throw TrainingError.invalidConfiguration(
        "data set \(name.rawValue) has no default location: pass --data DIR")
    }
    guard FileManager.default.fileExists(atPath: root) else {
      throw TrainingError.invalidConfiguration(
        "data directory \(root) does not exist"
          + (name == .fashionMNIST
            ? " (install Debian's dataset-fashion-mnist or pass --data DIR)" : ""))
    }
    func limited(_ d: any DataSet, _ n: Int?) -> any DataSet {
      guard let n, n < d.count else { return d }
      return AnyDataSetPrefix(base: d, count: max(0, n))
    }
    switch name {
    case .fashionMNIST, .mnist:
      let train = try IDXDataSet(root: root, split: .train)
      let test = try IDXDataSet(root: root, split: .test)
      return DataSplits(
        train: limited(train, trainLimit), test: limited(test, testLimit), classes: 10,
        inputChannels: 1, inputSize: 28, smallInput: true,
        trainTransform: augment ? RandomHorizontalFlip() : IdentityTransform(),
        evalTransform: IdentityTransform(),
        scale: 1 / 255, channelOrder: .rgb)
    case .cifar10, .cifar100:
      let variant: CIFARDataSet.Variant = name == .cifar10 ? .cifar10 : .cifar100(fine: true)
      let train = try CIFARDataSet(root: root, train: true, variant: variant)
      let test = try CIFARDataSet(root: root, train: false, variant: variant)
      return DataSplits(
        train: limited(train, trainLimit), test: limited(test, testLimit),
        classes: variant.classCount, inputChannels: 3, inputSize: 32, smallInput: true,
        trainTransform: augment ? Transforms.cifarTrain() : IdentityTransform(),
        evalTransform: IdentityTransform(),
        scale: 1 / 255, channelOrder: .rgb)
    case .imageFolder:
      let trainRoot = (root as NSString).appendingPathComponent("train")
      let valRoot = (root as NSString).appendingPathComponent("val")
      let train = try ImageFolder(root: trainRoot)
      let test = try ImageFolder(root: valRoot)
      guard train.classes == test.classes else {
        throw TrainingError.invalidConfiguration(
          "\(trainRoot) and \(valRoot) have different class folders")
      }
      return DataSplits(
        train: limited(train, trainLimit), test: limited(test, testLimit),
        classes: train.classCount, inputChannels: 3, inputSize: 224, smallInput: false,
        trainTransform: augment ? Transforms.imageNetTrain() : Transforms.imageNetEval(),
        evalTransform: Transforms.imageNetEval(), scale: 1, channelOrder: .bgr)
    }
  }
}

/// The first `count` samples of any data set.
struct AnyDataSetPrefix: DataSet {
  let base: any DataSet
  let count: Int
  var classCount: Int { base.classCount }
  func sample(_ index: Int) throws -> (image: PixelImage, label: Int) { try base.sample(index) }
}
