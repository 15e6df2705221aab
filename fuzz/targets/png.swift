// Fuzz target: PNG decoding (libpng through ImageCodec.decode), gray, gray+alpha, RGB, RGBA.

import ACONData
import Foundation

func fuzzOne(_ bytes: [UInt8]) { decodeAndCheck(bytes) }

func decodeAndCheck(_ bytes: [UInt8]) {
  guard let image = try? ImageCodec.decode(bytes, path: "fuzz") else { return }
  require(image.width > 0 && image.height > 0, "empty image decoded")
  require(image.channels == 3, "not RGB")
  require(image.pixels.count == image.width * image.height * 3, "pixel count")
}

func seedInputs() throws -> [(String, [UInt8])] {
  var seeds: [(String, [UInt8])] = []
  for (channels, name) in [(1, "gray"), (2, "gray-alpha"), (3, "rgb"), (4, "rgba")] {
    let (width, height) = (5, 3)
    let pixels = (0..<(width * height * channels)).map { UInt8(($0 * 29) & 0xFF) }
    let path = (Scratch.directory as NSString).appendingPathComponent("seed.png")
    try ImageCodec.writePNG(pixels: pixels, width: width, height: height, channels: channels, to: path)
    seeds.append(("\(name).png", [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))))
  }
  return seeds
}
