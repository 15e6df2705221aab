// Fuzz target: CIFAR-10/100 binary record files. The first input byte picks the variant
// (CIFAR-10, CIFAR-100 coarse, CIFAR-100 fine); the rest is the file.

import ACONData
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  guard let first = bytes.first else { return }
  let variants: [CIFARDataSet.Variant] = [.cifar10, .cifar100(fine: false), .cifar100(fine: true)]
  let variant = variants[Int(first) % 3]
  let path = Scratch.write(bytes.dropFirst(), name: "cifar.bin")
  guard let data = try? CIFARDataSet(files: [path], variant: variant) else { return }
  require(data.images.count == data.count * CIFARDataSet.imageBytes, "pixel count")
  for index in 0..<min(data.count, 4) {
    guard let sample = try? data.sample(index) else {
      require(false, "sample \(index) failed")
      return
    }
    require(sample.label < data.classCount, "label \(sample.label) out of range")
    require(sample.image.pixels.count == CIFARDataSet.imageBytes, "image size")
  }
}

func seedInputs() throws -> [(String, [UInt8])] {
  let image = (0..<CIFARDataSet.imageBytes).map { UInt8(($0 * 7) & 0xFF) }
  return [
    ("cifar10-two-records.bin", [0] + [3] + image + [9] + image),
    ("cifar100-one-record.bin", [1] + [19, 99] + image),
    ("cifar100-fine.bin", [2] + [4, 42] + image),
  ]
}
