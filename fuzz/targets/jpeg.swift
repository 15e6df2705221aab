// Fuzz target: JPEG decoding (libjpeg through ImageCodec.decode), gray, RGB and CMYK.

import ACONData
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  guard let image = try? ImageCodec.decode(bytes, path: "fuzz") else { return }
  require(image.width > 0 && image.height > 0, "empty image decoded")
  require(image.pixels.count == image.width * image.height * 3, "pixel count")
}

func seedInputs() throws -> [(String, [UInt8])] {
  var seeds: [(String, [UInt8])] = []
  for (channels, name) in [(1, "gray"), (3, "rgb"), (4, "cmyk")] {
    let (width, height) = (9, 7)
    let pixels = (0..<(width * height * channels)).map { UInt8(($0 * 53) & 0xFF) }
    let bytes = try ImageCodec.encodeJPEG(
      pixels: pixels, width: width, height: height, channels: channels, quality: 50)
    seeds.append(("\(name).jpg", bytes))
  }
  return seeds
}
