// Fuzz target: image folders (ImageFolder: class folders, recursive scan, decoding). The input
// is a list of entries that build a folder tree in the scratch space:
//   kind (1 byte: 0 file, 1 folder, 2 link to "..", 3 link to "."), path length (1 byte), path
//   (components joined by "/"; "." and ".." components are dropped so nothing lands outside),
//   and for files a content length (1 byte, times 16, capped by what is left) and the content.

import ACONData
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  let root = Scratch.freshFolder("folder")
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
    let rawPath = String(decoding: take(length).map { $0 == 0 ? UInt8(ascii: "_") : $0 }, as: UTF8.self)
    let components = rawPath.split(separator: "/").filter { $0 != "." && $0 != ".." && !$0.isEmpty }
    guard !components.isEmpty else { continue }
    let path = ([root] + components.map(String.init)).joined(separator: "/")
    let parent = (path as NSString).deletingLastPathComponent
    try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    switch kind {
    case 0:
      var size = 0
      if i < bytes.count {
        size = Int(bytes[i]) * 16
        i += 1
      }
      FileManager.default.createFile(atPath: path, contents: Data(take(size)))
    case 1: try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    case 2: _ = symlink("..", path)
    default: _ = symlink(".", path)
    }
  }
  guard let folder = try? ImageFolder(root: root) else { return }
  require(folder.classCount > 0 && folder.count > 0, "an empty image folder was accepted")
  for index in 0..<min(folder.count, 8) {
    guard let sample = try? folder.sample(index) else { continue }
    require(sample.label >= 0 && sample.label < folder.classCount, "label out of range")
    require(sample.image.pixels.count == sample.image.width * sample.image.height * 3, "pixel count")
  }
}

func entry(kind: UInt8, _ path: String, content: [UInt8] = []) -> [UInt8] {
  var out: [UInt8] = [kind, UInt8(path.utf8.count)] + Array(path.utf8)
  if kind == 0 {
    var padded = content
    while padded.count % 16 != 0 { padded.append(0) }
    out += [UInt8(padded.count / 16)] + padded
  }
  return out
}

func seedInputs() throws -> [(String, [UInt8])] {
  let pngPath = (Scratch.directory as NSString).appendingPathComponent("seed.png")
  try ImageCodec.writePNG(pixels: [UInt8](repeating: 200, count: 4 * 4 * 3), width: 4, height: 4, channels: 3, to: pngPath)
  let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: pngPath)))
  let jpeg = try ImageCodec.encodeJPEG(pixels: [UInt8](repeating: 90, count: 8 * 8), width: 8, height: 8, channels: 1, quality: 40)
  return [
    ("two-classes", entry(kind: 0, "cat/a.png", content: png) + entry(kind: 0, "dog/b.jpg", content: jpeg)),
    ("nested", entry(kind: 1, "cat/sub") + entry(kind: 0, "cat/sub/x.PNG", content: png) + entry(kind: 0, "cat/notes.txt", content: [1, 2])),
    ("loop", entry(kind: 0, "cat/a.png", content: png) + entry(kind: 2, "cat/up") + entry(kind: 3, "cat/here")),
  ]
}
