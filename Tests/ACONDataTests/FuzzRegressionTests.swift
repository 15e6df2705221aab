import ACONData
import ACONTensor
import Foundation
import Testing

/// The committed fuzz inputs (fuzz/corpus: the seeds; fuzz/regressions: every input that once
/// crashed a reader), replayed through the readers the way the fuzz targets feed them
/// (scripts/fuzz/run.sh). A crash here is a reader bug; each regression must be refused with a
/// clear error.
enum FuzzInputs {
  /// The repository's `fuzz` folder, found from this file's path.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fuzz")

  /// Every committed input of `target` (`corpus` or `regressions`), sorted by name.
  static func files(_ kind: String, _ target: String) -> [URL] {
    let folder = root.appendingPathComponent(kind).appendingPathComponent(target)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.sorted().map { folder.appendingPathComponent($0) }
  }

  static func bytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }
}

/// The IDX fuzz input: two big-endian bytes give the labels file's length L, the last L bytes are
/// the labels file, the bytes between the images file.
func loadIDXFuzzInput(_ bytes: [UInt8], in directory: TemporaryDirectory) throws -> IDXDataSet {
  let labelLength = min(Int(bytes[0]) << 8 | Int(bytes[1]), bytes.count - 2)
  let images = try directory.write("images", Array(bytes[2..<(bytes.count - labelLength)]))
  let labels = try directory.write("labels", Array(bytes[(bytes.count - labelLength)...]))
  return try IDXDataSet(imagesPath: images, labelsPath: labels)
}

@Suite("Fuzz regressions: data readers")
struct DataFuzzRegressionTests {
  @Test func committedInputsExist() {
    for target in ["idx", "idx-gzip", "cifar", "png", "jpeg", "imagefolder", "safetensors"] {
      #expect(!FuzzInputs.files("corpus", target).isEmpty, "no seed corpus for \(target)")
    }
  }

  @Test func idxSeedsLoadAndRegressionsAreRefused() throws {
    let directory = try TemporaryDirectory()
    for target in ["idx", "idx-gzip"] {
      for url in FuzzInputs.files("corpus", target) {
        let data = try loadIDXFuzzInput(try FuzzInputs.bytes(url), in: directory)
        for i in 0..<data.count { _ = try data.sample(i) }
      }
    }
    // Three 32-bit sizes whose product overflows Int: refused, not trapped.
    let overflow = try FuzzInputs.bytes(
      FuzzInputs.root.appendingPathComponent("regressions/idx/dimensions-overflow-int.idx"))
    let message = errorMessage { _ = try loadIDXFuzzInput(overflow, in: directory) }
    #expect(message.contains("more data bytes than a file can hold"), "\(message)")
    // A gzip trailer claiming 2 GB: the stream is inflated into a buffer sized by what deflate
    // can produce from the input, and the bad stream is reported.
    let bomb = try FuzzInputs.bytes(
      FuzzInputs.root.appendingPathComponent("regressions/idx-gzip/trailer-claims-2gb.idx.gz"))
    let gzipMessage = errorMessage { _ = try loadIDXFuzzInput(bomb, in: directory) }
    #expect(gzipMessage.contains("gzip") || gzipMessage.contains("IDX"), "\(gzipMessage)")
  }

  @Test func gzipTrailerSizeIsNotTrusted() throws {
    // A valid gzip member of 10 bytes whose trailer is rewritten to claim 4 GB - 1: the reader
    // must not size its buffer by the claim (it would allocate 4 GB for 30 bytes of input).
    let directory = try TemporaryDirectory()
    let path = try directory.write("small.gz", Array(repeating: 7, count: 10), gzip: true)
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    for i in (bytes.count - 4)..<bytes.count { bytes[i] = 0xFF }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let before = peakResidentBytes()
    let message = errorMessage { _ = try FileBytes.read(path) }
    #expect(message.contains("gzip"), "\(message)")
    #expect(
      peakResidentBytes() - before < 1 << 30, "reading 30 bytes raised the peak RSS by a gigabyte")
  }

  @Test func cifarSeedsLoadAndRegressionsAreRefused() throws {
    let directory = try TemporaryDirectory()
    let variants: [CIFARDataSet.Variant] = [
      .cifar10, .cifar100(fine: false), .cifar100(fine: true),
    ]
    for url in FuzzInputs.files("corpus", "cifar") {
      let bytes = try FuzzInputs.bytes(url)
      let path = try directory.write("cifar.bin", Array(bytes.dropFirst()))
      let data = try CIFARDataSet(files: [path], variant: variants[Int(bytes[0]) % 3])
      for i in 0..<data.count { _ = try data.sample(i) }
    }
    for url in FuzzInputs.files("regressions", "cifar") {
      let bytes = try FuzzInputs.bytes(url)
      let path = try directory.write("cifar.bin", Array(bytes.dropFirst()))
      let message = errorMessage {
        _ = try CIFARDataSet(files: [path], variant: variants[Int(bytes[0]) % 3])
      }
      #expect(message.contains(path), "\(url.lastPathComponent): \(message)")
    }
  }

  @Test func imageSeedsDecodeAndRegressionsAreRefused() throws {
    for target in ["png", "jpeg"] {
      for url in FuzzInputs.files("corpus", target) {
        let image = try ImageCodec.decode(try FuzzInputs.bytes(url), path: url.path)
        #expect(image.pixels.count == image.width * image.height * 3)
      }
      for url in FuzzInputs.files("regressions", target) {
        let message = errorMessage {
          _ = try ImageCodec.decode(try FuzzInputs.bytes(url), path: url.path)
        }
        #expect(message.contains("cannot decode"), "\(url.lastPathComponent): \(message)")
      }
    }
  }

  @Test func safetensorsSeedsDecodeAndRegressionsAreRefused() throws {
    for url in FuzzInputs.files("corpus", "safetensors") {
      _ = try SafeTensors.decode(try Data(contentsOf: url), path: url.path)
    }
    for url in FuzzInputs.files("regressions", "safetensors") {
      let message = errorMessage {
        _ = try SafeTensors.decode(try Data(contentsOf: url), path: url.path)
      }
      #expect(message.contains(url.path), "\(url.lastPathComponent): \(message)")
    }
  }

  @Test func safetensorsClaimingTerabytesAreRefusedBeforeAllocating() throws {
    // 2^20 x 2^20 F32 = 4 TiB claimed by a 100-byte file: refused as truncated.
    let header =
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4398046511104]}}"
    var bytes: [UInt8] = []
    var n = UInt64(header.utf8.count)
    for _ in 0..<8 {
      bytes.append(UInt8(n & 0xFF))
      n >>= 8
    }
    bytes += Array(header.utf8)
    let message = errorMessage { _ = try SafeTensors.decode(Data(bytes)) }
    #expect(message.contains("truncated"), "\(message)")
  }
}

/// The process's peak resident set so far, in bytes (getrusage).
func peakResidentBytes() -> Int {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return usage.ru_maxrss * 1024
}

/// Builds the folder tree an imagefolder fuzz input describes (fuzz/targets/imagefolder.swift):
/// entries of kind (0 file, 1 folder, 2 link to "..", 3 link to "."), path length, path and, for
/// files, a length in 16-byte units and the content.
func buildImageFolderFuzzInput(_ bytes: [UInt8], at root: String) {
  var i = 0
  func take(_ n: Int) -> ArraySlice<UInt8> {
    let end = min(bytes.count, i + n)
    defer { i = end }
    return bytes[i..<end]
  }
  var entries = 0
  while i + 2 <= bytes.count, entries < 32 {
    entries += 1
    let kind = bytes[i] % 4
    let length = Int(bytes[i + 1])
    i += 2
    let rawPath = String(
      decoding: take(length).map { $0 == 0 ? UInt8(ascii: "_") : $0 }, as: UTF8.self)
    let components = rawPath.split(separator: "/").filter { $0 != "." && $0 != ".." && !$0.isEmpty }
    guard !components.isEmpty else { continue }
    let path = ([root] + components.map(String.init)).joined(separator: "/")
    try? FileManager.default.createDirectory(
      atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    switch kind {
    case 0:
      var size = 0
      if i < bytes.count {
        size = Int(bytes[i]) * 16
        i += 1
      }
      _ = FileManager.default.createFile(atPath: path, contents: Data(take(size)))
    case 1:
      try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    case 2: _ = symlink("..", path)
    default: _ = symlink(".", path)
    }
  }
}

@Suite("Fuzz regressions: image folders")
struct ImageFolderFuzzRegressionTests {
  @Test func seedsScanAndDecode() throws {
    for url in FuzzInputs.files("corpus", "imagefolder")
      + FuzzInputs.files("regressions", "imagefolder")
    {
      let directory = try TemporaryDirectory()
      let root = directory.file("root")
      buildImageFolderFuzzInput(try FuzzInputs.bytes(url), at: root)
      let folder = try ImageFolder(root: root)
      for i in 0..<folder.count { _ = try folder.sample(i) }
    }
  }

  @Test func linksUpTheTreeAreListedOnce() throws {
    // cat/up -> .. and cat/here -> . : a walk that follows links would never end.
    let directory = try TemporaryDirectory()
    let root = directory.file("root")
    buildImageFolderFuzzInput(
      try FuzzInputs.bytes(
        FuzzInputs.root.appendingPathComponent("regressions/imagefolder/links-up-the-tree")),
      at: root)
    let folder = try ImageFolder(root: root)
    #expect(folder.classes == ["cat"])
    #expect(folder.files.map { ($0.path as NSString).lastPathComponent } == ["a.png"])
  }
}
