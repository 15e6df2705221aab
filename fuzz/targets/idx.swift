// Fuzz target: IDX data sets (MNIST, Fashion-MNIST), raw or gzip-compressed. One input holds both
// files: two big-endian bytes give the labels file's length L, the last L bytes are the labels
// file and the bytes between are the images file. The corpus of `idx` holds raw files, that of
// `idx-gzip` gzip streams (FileBytes inflates whatever starts with the gzip magic).

import ACONData
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  guard bytes.count >= 2 else { return }
  let labelLength = min(Int(bytes[0]) << 8 | Int(bytes[1]), bytes.count - 2)
  let images = Scratch.write(bytes[2..<(bytes.count - labelLength)], name: "images")
  let labels = Scratch.write(bytes[(bytes.count - labelLength)...], name: "labels")
  guard let data = try? IDXDataSet(imagesPath: images, labelsPath: labels) else { return }
  require(data.images.count == data.count * data.rows * data.columns, "pixel count")
  for index in stride(from: 0, to: data.count, by: max(1, data.count / 8)) {
    guard let sample = try? data.sample(index) else {
      require(false, "sample \(index) of \(data.count) failed")
      return
    }
    require(sample.label < data.classCount, "label out of range")
    require(sample.image.pixels.count == data.rows * data.columns, "image size")
  }
}

/// An IDX file of unsigned bytes: magic `00 00 08 <dims>`, big-endian sizes, data.
func idxFile(dims: [Int], data: [UInt8]) -> [UInt8] {
  var out: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
  for d in dims { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
  return out + data
}

func pair(images: [UInt8], labels: [UInt8]) -> [UInt8] {
  [UInt8(labels.count >> 8), UInt8(labels.count & 0xFF)] + images + labels
}

func seedInputs() throws -> [(String, [UInt8])] {
  let pixels = (0..<(3 * 4 * 5)).map { UInt8(($0 * 37) & 0xFF) }
  let images = idxFile(dims: [3, 4, 5], data: pixels)
  let labels = idxFile(dims: [3], data: [0, 9, 4])
  let one = idxFile(dims: [1, 2, 2], data: [1, 2, 3, 4])
  let oneLabel = idxFile(dims: [1], data: [7])
  if ProcessInfo.processInfo.environment["ACON_FUZZ_GZIP"] != nil {
    return [
      ("three.idx.gz", pair(images: try gzip(images), labels: try gzip(labels))),
      ("one.idx.gz", pair(images: try gzip(one), labels: try gzip(oneLabel))),
      ("mixed.idx.gz", pair(images: try gzip(images), labels: labels)),
    ]
  }
  return [
    ("three.idx", pair(images: images, labels: labels)), ("one.idx", pair(images: one, labels: oneLabel)),
    ("empty.idx", pair(images: idxFile(dims: [0, 28, 28], data: []), labels: idxFile(dims: [0], data: []))),
  ]
}

/// gzip through the system's `gzip` (the seeds are made once, by scripts/fuzz/run.sh --seeds).
func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
  let input = Scratch.write(bytes, name: "seed")
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/bin/gzip")
  process.arguments = ["-9", "-n", "-c", input]
  let pipe = Pipe()
  process.standardOutput = pipe
  try process.run()
  let out = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return [UInt8](out)
}
