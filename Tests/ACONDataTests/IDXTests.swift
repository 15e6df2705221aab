import ACONData
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("IDX (MNIST, Fashion-MNIST)")
struct IDXTests {
  /// The real training split, loaded once for the tests that read it.
  static let fashionTrain = Result { try IDXDataSet(split: .train) }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func realFashionMNISTTrain() throws
  {
    let data = try Self.fashionTrain.get()
    #expect(data.count == 60000)
    #expect(data.rows == 28 && data.columns == 28)
    #expect(data.classCount == 10)
    #expect(
      data.labels.prefix(20).map(Int.init) == [
        9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4,
      ])
    // Values read with Python's gzip module from the same files.
    let (image, label) = try data.sample(0)
    #expect(label == 9)
    #expect(image.channels == 1 && image.width == 28 && image.height == 28)
    #expect(image.pixels.reduce(0) { $0 + Int($1) } == 76247)
    #expect(
      Array(image.pixels[(14 * 28)..<(15 * 28)])
        == [
          0, 0, 1, 4, 6, 7, 2, 0, 0, 0, 0, 0, 237, 226, 217, 223, 222, 219, 222, 221, 216, 223, 229,
          215, 218, 255, 77, 0,
        ])
    #expect(data.images.reduce(0) { $0 + Int($1) } == 3_431_114_169)
    #expect(data.labels.reduce(0) { $0 + Int($1) } == 270000)
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func realFashionMNISTTest() throws
  {
    let data = try IDXDataSet(split: .test)
    #expect(data.count == 10000)
    #expect(
      data.labels.prefix(20).map(Int.init) == [
        9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1, 2, 4, 8, 0,
      ])
    #expect(try data.sample(0).image.pixels.reduce(0) { $0 + Int($1) } == 33456)
    #expect(data.images.reduce(0) { $0 + Int($1) } == 573_469_082)
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func realSliceThroughLoader() throws
  {
    let data = try Self.fashionTrain.get().prefix(100)
    #expect(data.count == 100)
    let loader = try DataLoader(data, batchSize: 32, shuffle: false, scale: 1.0 / 255)
    #expect(loader.batchesPerEpoch == 4)
    let stream = loader.batches(epoch: 0)
    var labels: [Int] = []
    var sizes: [Int] = []
    while let batch = try stream.next() {
      #expect(batch.images.shape.dropFirst() == [1, 28, 28])
      sizes.append(batch.images.shape[0])
      labels += batch.labels
      let v = batch.images.scalars
      #expect(v.min()! >= 0 && v.max()! <= 1)
      if batch.batchIndex == 0 {
        #expect(abs(v[14 * 28 + 12] - 237.0 / 255) < 1e-6)
      }
    }
    #expect(sizes == [32, 32, 32, 4])
    let full = try Self.fashionTrain.get()
    #expect(labels == full.labels.prefix(100).map(Int.init))
  }

  /// Three 2x3 images with labels 0, 7, 9.
  static let pixels: [UInt8] = Array(0..<18).map { UInt8($0 * 13 % 256) }
  static let images = idxBytes(dims: [3, 2, 3], data: pixels)
  static let labels = idxBytes(dims: [3], data: [0, 7, 9])

  @Test func gzipAndRawFilesReadTheSame() throws {
    let dir = try TemporaryDirectory()
    let raw = try IDXDataSet(
      imagesPath: dir.write("i.idx", Self.images), labelsPath: dir.write("l.idx", Self.labels))
    let gz = try IDXDataSet(
      imagesPath: dir.write("i.gz", Self.images, gzip: true),
      labelsPath: dir.write("l.gz", Self.labels, gzip: true))
    for data in [raw, gz] {
      #expect(data.count == 3 && data.rows == 2 && data.columns == 3)
      #expect(data.labels == [0, 7, 9])
      let s = try data.sample(1)
      #expect(s.label == 7)
      #expect(s.image.pixels == Array(Self.pixels[6..<12]))
    }
    #expect(raw.images == gz.images)
  }

  @Test func rootFindsRawFilesWhenNoGzip() throws {
    let dir = try TemporaryDirectory()
    try dir.write("t10k-images-idx3-ubyte", Self.images)
    try dir.write("t10k-labels-idx1-ubyte", Self.labels, gzip: false)
    let data = try IDXDataSet(root: dir.path, split: .test)
    #expect(data.count == 3)
    let missing = errorMessage { _ = try IDXDataSet(root: dir.path, split: .train) }
    #expect(missing.contains("train-images-idx3-ubyte.gz") && missing.contains("not found"))
  }

  /// Loads `images`/`labels` written to files named a.idx and b.idx; returns the error message.
  func failure(images: [UInt8], labels: [UInt8], gzip: Bool = false, classCount: Int = 10)
    throws -> String
  {
    let dir = try TemporaryDirectory()
    let i = try dir.write("images.idx", images, gzip: gzip)
    let l = try dir.write("labels.idx", labels, gzip: gzip)
    return errorMessage { _ = try IDXDataSet(imagesPath: i, labelsPath: l, classCount: classCount) }
  }

  @Test func badFilesAreNamedWithTheProblem() throws {
    var m = try failure(
      images: idxBytes(dims: [3, 2, 3], data: Self.pixels, magic: [0, 0, 8, 1]), labels: Self.labels
    )
    #expect(
      m.contains("images.idx") && m.contains("wrong magic 0x00000801") && m.contains("dimensions"))
    m = try failure(
      images: Self.images, labels: idxBytes(dims: [3], data: [0, 7, 9], magic: [0, 0, 8, 3]))
    #expect(m.contains("labels.idx") && m.contains("wrong magic"))
    m = try failure(
      images: idxBytes(dims: [3, 2, 3], data: Self.pixels, magic: [0, 0, 0x0D, 3]),
      labels: Self.labels)
    #expect(m.contains("images.idx") && m.contains("not unsigned byte"))
    m = try failure(images: [0x50, 0x4B, 3, 4] + Self.images, labels: Self.labels)
    #expect(m.contains("images.idx") && m.contains("not an IDX file"))
    m = try failure(images: [0, 0], labels: Self.labels)
    #expect(m.contains("images.idx") && m.contains("too short"))
    m = try failure(images: Array(Self.images.prefix(10)), labels: Self.labels)
    #expect(m.contains("images.idx") && m.contains("truncated header"))
  }

  @Test func byteCountMustMatchTheHeader() throws {
    var m = try failure(images: Array(Self.images.dropLast(5)), labels: Self.labels)
    #expect(
      m.contains("images.idx") && m.contains("3 x 2 x 3 = 18 data bytes") && m.contains("holds 13")
        && m.contains("truncated"))
    m = try failure(images: Self.images + [1, 2], labels: Self.labels)
    #expect(m.contains("images.idx") && m.contains("trailing"))
    m = try failure(images: Self.images, labels: Array(Self.labels.dropLast()))
    #expect(m.contains("labels.idx") && m.contains("truncated"))
  }

  @Test func truncatedAndCorruptGzip() throws {
    let dir = try TemporaryDirectory()
    let l = try dir.write("l.gz", Self.labels, gzip: true)
    let whole = try [UInt8](
      Data(contentsOf: URL(fileURLWithPath: try dir.write("i.gz", Self.images, gzip: true))))
    let cut = try dir.write("cut.gz", Array(whole.prefix(whole.count - 12)))
    var m = errorMessage { _ = try IDXDataSet(imagesPath: cut, labelsPath: l) }
    #expect(m.contains("cut.gz") && m.contains("truncated"))
    var garbled = whole
    for i in 12..<min(20, garbled.count - 8) { garbled[i] ^= 0xA5 }
    let bad = try dir.write("bad.gz", garbled)
    m = errorMessage { _ = try IDXDataSet(imagesPath: bad, labelsPath: l) }
    #expect(m.contains("bad.gz") && (m.contains("corrupt") || m.contains("truncated")))
  }

  @Test func labelsMustBeInRangeAndCountsAgree() throws {
    var m = try failure(images: Self.images, labels: idxBytes(dims: [3], data: [0, 10, 9]))
    #expect(m.contains("labels.idx") && m.contains("label 10 of sample 1 is outside 0..<10"))
    m = try failure(
      images: Self.images, labels: idxBytes(dims: [3], data: [0, 4, 9]), classCount: 5)
    #expect(m.contains("label 9 of sample 2 is outside 0..<5"))
    m = try failure(images: Self.images, labels: idxBytes(dims: [2], data: [0, 1]), gzip: true)
    #expect(m.contains("labels.idx") && m.contains("holds 2 labels") && m.contains("3 images"))
  }

  @Test func missingFile() throws {
    let dir = try TemporaryDirectory()
    let l = try dir.write("l.idx", Self.labels)
    let m = errorMessage { _ = try IDXDataSet(imagesPath: dir.file("nope.gz"), labelsPath: l) }
    #expect(m.contains("nope.gz") && m.contains("file not found"))
    #expect(throws: TensorError.self) { _ = try FileBytes.read(dir.file("x")) }
  }
}
