import ACONData
import ACONTensor
import Foundation
import Testing

@Suite("CIFAR and image folders")
struct CIFARAndImageFolderTests {
  /// A record: label byte(s), then planes R (all r), G (pixel index % 256), B (all b).
  static func record(labels: [UInt8], r: UInt8, b: UInt8) -> [UInt8] {
    labels + [UInt8](repeating: r, count: 1024) + (0..<1024).map { UInt8($0 % 256) }
      + [UInt8](repeating: b, count: 1024)
  }

  @Test func cifar10ReadsRecordsAndBatches() throws {
    let dir = try TemporaryDirectory()
    for i in 1...5 {
      try dir.write(
        "data_batch_\(i).bin",
        Self.record(labels: [UInt8(i)], r: 10, b: 20) + Self.record(labels: [9], r: 30, b: 40))
    }
    try dir.write("test_batch.bin", Self.record(labels: [0], r: 1, b: 2))
    let train = try CIFARDataSet(root: dir.path, train: true)
    #expect(train.count == 10 && train.classCount == 10)
    #expect(train.labels == [1, 9, 2, 9, 3, 9, 4, 9, 5, 9])
    let s = try train.sample(1)
    #expect(s.label == 9 && s.image.width == 32 && s.image.channels == 3)
    // Pixel 5 (row 0, column 5): R 30, G 5, B 40, interleaved.
    #expect(Array(s.image.pixels[15..<18]) == [30, 5, 40])
    #expect(try CIFARDataSet(root: dir.path, train: false).count == 1)
  }

  @Test func cifar100FineAndCoarse() throws {
    let dir = try TemporaryDirectory()
    let bytes =
      Self.record(labels: [3, 77], r: 1, b: 2) + Self.record(labels: [19, 99], r: 1, b: 2)
    try dir.write("train.bin", bytes)
    let fine = try CIFARDataSet(root: dir.path, train: true, variant: .cifar100(fine: true))
    let coarse = try CIFARDataSet(root: dir.path, train: true, variant: .cifar100(fine: false))
    #expect(fine.labels == [77, 99] && fine.classCount == 100)
    #expect(coarse.labels == [3, 19] && coarse.classCount == 20)
  }

  @Test func cifarBadFiles() throws {
    let dir = try TemporaryDirectory()
    let short = try dir.write("short.bin", Array(Self.record(labels: [1], r: 0, b: 0).dropLast()))
    var m = errorMessage { _ = try CIFARDataSet(files: [short], variant: .cifar10) }
    #expect(m.contains("short.bin") && m.contains("not a whole number of 3073-byte records"))
    let bad = try dir.write(
      "bad.bin", Self.record(labels: [0], r: 0, b: 0) + Self.record(labels: [10], r: 0, b: 0))
    m = errorMessage { _ = try CIFARDataSet(files: [bad], variant: .cifar10) }
    #expect(m.contains("bad.bin") && m.contains("label 10 of record 1 is outside 0..<10"))
    let c100 = try dir.write("c100.bin", Self.record(labels: [20, 5], r: 0, b: 0))
    m = errorMessage { _ = try CIFARDataSet(files: [c100], variant: .cifar100(fine: true)) }
    #expect(m.contains("coarse label 20"))
    let f100 = try dir.write("f100.bin", Self.record(labels: [2, 100], r: 0, b: 0))
    m = errorMessage { _ = try CIFARDataSet(files: [f100], variant: .cifar100(fine: true)) }
    #expect(m.contains("fine label 100"))
    m = errorMessage { _ = try CIFARDataSet(root: dir.path, train: false) }
    #expect(m.contains("test_batch.bin") && m.contains("not found"))
  }

  /// An image folder with classes ant, bee, cat (written in another order) holding PNG and JPEG
  /// files of several colour types.
  static func makeFolder(_ dir: TemporaryDirectory) throws {
    // 4x3 RGB with distinct pixels, as PNG.
    let rgb: [UInt8] = (0..<36).map { UInt8($0 * 7) }
    try ImageCodec.writePNG(
      pixels: rgb, width: 4, height: 3, channels: 3, to: dir.file("cat/b.png"))
    // Gray+alpha PNG: alpha must be dropped, gray replicated.
    try ImageCodec.writePNG(
      pixels: [10, 255, 200, 0], width: 2, height: 1, channels: 2, to: dir.file("cat/a.png"))
    // JPEGs: flat colours, so that they survive compression nearly exactly.
    let red = [UInt8](repeating: 0, count: 8 * 8 * 3).enumerated().map {
      $0.offset % 3 == 0 ? UInt8(200) : UInt8(30)
    }
    try dir.write(
      "ant/x.JPG",
      ImageCodec.encodeJPEG(pixels: red, width: 8, height: 8, channels: 3, quality: 100))
    try dir.write(
      "ant/gray.jpeg",
      ImageCodec.encodeJPEG(
        pixels: [UInt8](repeating: 90, count: 64), width: 8, height: 8, channels: 1, quality: 100))
    // CMYK as libjpeg writes it (with an Adobe marker, so stored inverted): magenta.
    let cmyk: [UInt8] = (0..<64).flatMap { _ -> [UInt8] in [255, 0, 255, 255] }
    try dir.write(
      "bee/sub/m.jpg",
      ImageCodec.encodeJPEG(pixels: cmyk, width: 8, height: 8, channels: 4, quality: 100))
    try dir.write("bee/notes.txt", Array("not an image".utf8))
  }

  @Test func imageFolderListsAndDecodes() throws {
    let dir = try TemporaryDirectory()
    try Self.makeFolder(dir)
    let folder = try ImageFolder(root: dir.path)
    #expect(folder.classes == ["ant", "bee", "cat"])
    #expect(
      folder.files.map { ($0.path as NSString).lastPathComponent } == [
        "gray.jpeg", "x.JPG", "m.jpg", "a.png", "b.png",
      ])
    #expect(folder.files.map(\.label) == [0, 0, 1, 2, 2])
    let gray = try folder.sample(0).image
    #expect(gray.channels == 3 && gray.width == 8)
    #expect(gray.pixels.allSatisfy { abs(Int($0) - 90) <= 2 })
    let red = try folder.sample(1).image.pixels
    #expect(abs(Int(red[0]) - 200) <= 3 && abs(Int(red[1]) - 30) <= 3 && abs(Int(red[2]) - 30) <= 3)
    let magenta = try folder.sample(2)
    #expect(magenta.label == 1)
    #expect(
      abs(Int(magenta.image.pixels[0]) - 255) <= 3 && Int(magenta.image.pixels[1]) <= 3
        && abs(Int(magenta.image.pixels[2]) - 255) <= 3)
    let ga = try folder.sample(3).image
    #expect(ga.pixels == [10, 10, 10, 200, 200, 200])
    let png = try folder.sample(4).image
    #expect(png.width == 4 && png.height == 3 && png.pixels == (0..<36).map { UInt8($0 * 7) })
  }

  @Test func corruptImagesNameTheFile() throws {
    let dir = try TemporaryDirectory()
    try Self.makeFolder(dir)
    let good = try ImageCodec.encodeJPEG(
      pixels: [UInt8](repeating: 5, count: 48), width: 4, height: 4, channels: 3)
    try dir.write("cat/c_broken.jpg", Array(good.prefix(30)))
    try dir.write("cat/d_garbage.png", [0x89, 0x50, 0x4E, 0x47, 1, 2, 3, 4, 5, 6, 7, 8])
    try dir.write("cat/e_text.jpg", Array("hello".utf8))
    let folder = try ImageFolder(root: dir.path)
    let names = folder.files.map { ($0.path as NSString).lastPathComponent }
    for name in ["c_broken.jpg", "d_garbage.png", "e_text.jpg"] {
      let i = names.firstIndex(of: name)!
      let m = errorMessage { _ = try folder.sample(i) }
      #expect(m.contains(name) && m.contains("decode"), "\(m)")
    }
    // The loader reports the first failure, or skips and counts with skipUnreadable.
    let strict = try DataLoader(
      folder, batchSize: 8, shuffle: false, transform: CenterCrop(size: 2))
    #expect(throws: TensorError.self) { _ = try strict.batches(epoch: 0).next() }
    let lenient = try DataLoader(
      folder, batchSize: 8, shuffle: false, transform: CenterCrop(size: 2), skipUnreadable: true)
    let batch = try #require(try lenient.batches(epoch: 0).next())
    #expect(batch.images.shape == [5, 3, 2, 2])
    #expect(batch.skipped.count == 3)
    #expect(batch.skipped.map(\.index) == [5, 6, 7])
    #expect(batch.skipped[0].reason.contains("c_broken.jpg"))
  }

  @Test func folderErrors() throws {
    let dir = try TemporaryDirectory()
    var m = errorMessage { _ = try ImageFolder(root: dir.file("absent")) }
    #expect(m.contains("absent") && m.contains("not found"))
    m = errorMessage { _ = try ImageFolder(root: dir.path) }
    #expect(m.contains("no class folders"))
    try dir.write("dog/readme.txt", [1])
    m = errorMessage { _ = try ImageFolder(root: dir.path) }
    #expect(m.contains("dog") && m.contains("holds no"))
  }
}
