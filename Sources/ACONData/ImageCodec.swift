import ACONTensor
import CImageDecode
import CJPEG
import CPNG
import Foundation

/// JPEG and PNG decoding to 8-bit RGB (libjpeg, libpng), and encoding for tests and tools.
///
/// Colour handling follows PIL's `convert("RGB")`, which torchvision's ImageFolder uses:
/// grayscale is replicated to three channels, alpha is dropped, CMYK is converted.
public enum ImageCodec {
  /// Decodes the image file at `path` (the format is sniffed from its first bytes).
  public static func decode(file path: String) throws -> PixelImage {
    guard let data = FileManager.default.contents(atPath: path) else {
      let exists = FileManager.default.fileExists(atPath: path)
      throw TensorError.invalidFile(
        path: path, detail: exists ? "file could not be read" : "file not found")
    }
    return try decode([UInt8](data), path: path)
  }

  /// Decodes a JPEG or PNG held in memory; `path` names it in errors.
  public static func decode(_ bytes: [UInt8], path: String) throws -> PixelImage {
    if bytes.count >= 8 && bytes[0] == 0x89 && bytes[1] == 0x50 && bytes[2] == 0x4E
      && bytes[3] == 0x47
    {
      return try decodePNG(bytes, path: path)
    }
    if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
      return try decodeJPEG(bytes, path: path)
    }
    throw TensorError.invalidFile(
      path: path, detail: "cannot decode image: neither a JPEG nor a PNG (\(bytes.count) bytes)")
  }

  /// The most pixels an image may have: PIL's decompression-bomb limit (twice
  /// `Image.MAX_IMAGE_PIXELS`), beyond which torchvision's loader refuses an image too.
  public static let maximumPixels = 178_956_970

  static func decodeJPEG(_ bytes: [UInt8], path: String) throws -> PixelImage {
    var out: UnsafeMutablePointer<UInt8>? = nil
    var width: Int32 = 0
    var height: Int32 = 0
    var message = [CChar](repeating: 0, count: 256)
    let status = bytes.withUnsafeBufferPointer { buf in
      acon_jpeg_decode(buf.baseAddress, buf.count, &out, &width, &height, &message, message.count)
    }
    guard status == 0, let out else {
      let text = String(
        decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      throw TensorError.invalidFile(path: path, detail: "cannot decode JPEG: \(text)")
    }
    defer { acon_image_free(out) }
    let n = Int(width) * Int(height) * 3
    return PixelImage(
      width: Int(width), height: Int(height), channels: 3,
      pixels: Array(UnsafeBufferPointer(start: out, count: n)))
  }

  static func pngMessage(_ image: inout png_image) -> String {
    withUnsafeBytes(of: &image.message) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
  }

  static func decodePNG(_ bytes: [UInt8], path: String) throws -> PixelImage {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    defer { png_image_free(&image) }
    let began = bytes.withUnsafeBufferPointer { buf in
      png_image_begin_read_from_memory(&image, buf.baseAddress, buf.count)
    }
    guard began != 0 else {
      throw TensorError.invalidFile(path: path, detail: "cannot decode PNG: \(pngMessage(&image))")
    }
    let width = Int(image.width)
    let height = Int(image.height)
    guard width > 0, height > 0, width * height <= maximumPixels else {
      throw TensorError.invalidFile(path: path, detail: "unsupported PNG size \(width)x\(height)")
    }
    // Deflate expands at most 1032-fold and a stored row takes at least a filter byte and one
    // bit per pixel: a header claiming more rows than the file's bytes can hold is refused
    // before the pixel buffer is allocated.
    let rawBytes = height * (1 + (width + 7) / 8)
    guard rawBytes <= 1032 * bytes.count else {
      throw TensorError.invalidFile(
        path: path,
        detail:
          "cannot decode PNG: the header claims \(width)x\(height), more than \(bytes.count) bytes can hold"
      )
    }
    // Read as 8-bit RGBA and drop alpha, as PIL's convert("RGB") does (no compositing).
    image.format = UInt32(PNG_FORMAT_RGB) | UInt32(PNG_FORMAT_FLAG_ALPHA)
    var rgba = [UInt8](repeating: 0, count: width * height * 4)
    let finished = rgba.withUnsafeMutableBytes { buf in
      png_image_finish_read(&image, nil, buf.baseAddress, 0, nil)
    }
    guard finished != 0 else {
      throw TensorError.invalidFile(path: path, detail: "cannot decode PNG: \(pngMessage(&image))")
    }
    var rgb = [UInt8](repeating: 0, count: width * height * 3)
    for i in 0..<(width * height) {
      rgb[3 * i] = rgba[4 * i]
      rgb[3 * i + 1] = rgba[4 * i + 1]
      rgb[3 * i + 2] = rgba[4 * i + 2]
    }
    return PixelImage(width: width, height: height, channels: 3, pixels: rgb)
  }

  /// Writes interleaved 8-bit pixels (1 gray, 2 gray+alpha, 3 RGB or 4 RGBA channels) as a PNG.
  public static func writePNG(
    pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String
  ) throws {
    guard pixels.count == width * height * channels, (1...4).contains(channels) else {
      throw TensorError.invalidArgument(
        operation: "ImageCodec.writePNG",
        detail: "\(pixels.count) bytes for \(width)x\(height)x\(channels)")
    }
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    // Formats are flag sets: colour and alpha (PNG_FORMAT_GA, _RGB, _RGBA as C spells them).
    let color = channels >= 3 ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0
    let alpha = channels % 2 == 0 ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0
    image.format = color | alpha
    let ok = pixels.withUnsafeBytes { buf in
      png_image_write_to_file(&image, path, 0, buf.baseAddress, 0, nil)
    }
    guard ok != 0 else {
      throw TensorError.invalidFile(path: path, detail: "cannot write PNG: \(pngMessage(&image))")
    }
  }

  /// Encodes interleaved 8-bit pixels (1 gray, 3 RGB or 4 CMYK channels) as a JPEG.
  public static func encodeJPEG(
    pixels: [UInt8], width: Int, height: Int, channels: Int, quality: Int = 95
  ) throws -> [UInt8] {
    guard pixels.count == width * height * channels, [1, 3, 4].contains(channels) else {
      throw TensorError.invalidArgument(
        operation: "ImageCodec.encodeJPEG",
        detail: "\(pixels.count) bytes for \(width)x\(height)x\(channels)")
    }
    var out: UnsafeMutablePointer<UInt8>? = nil
    var size = 0
    var message = [CChar](repeating: 0, count: 256)
    let status = pixels.withUnsafeBufferPointer { buf in
      acon_jpeg_encode(
        buf.baseAddress, Int32(width), Int32(height), Int32(channels), Int32(quality), &out, &size,
        &message, message.count)
    }
    guard status == 0, let out else {
      let text = String(
        decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      throw TensorError.invalidArgument(operation: "ImageCodec.encodeJPEG", detail: text)
    }
    defer { acon_image_free(out) }
    return Array(UnsafeBufferPointer(start: out, count: size))
  }
}
