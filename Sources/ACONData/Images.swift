/// An 8-bit image with interleaved channels (HWC), as decoders and data files produce it.
///
/// Colour images are RGB; data sets of single-channel images (MNIST) have `channels == 1`.
public struct PixelImage: Sendable, Equatable {
  /// Width in pixels.
  public var width: Int
  /// Height in pixels.
  public var height: Int
  /// Channels per pixel: 1 (gray) or 3 (RGB).
  public var channels: Int
  /// `height * width * channels` bytes, row by row, channels interleaved.
  public var pixels: [UInt8]

  /// An image over `pixels`; their count must be `height * width * channels`.
  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height * channels, "pixel count does not match the size")
    self.width = width
    self.height = height
    self.channels = channels
    self.pixels = pixels
  }

  /// The image as planar floats in 0...255, the form the transforms work on.
  public func floatImage() -> FloatImage {
    var out = FloatImage(channels: channels, height: height, width: width)
    let plane = height * width
    pixels.withUnsafeBufferPointer { src in
      out.pixels.withUnsafeMutableBufferPointer { dst in
        for i in 0..<plane {
          for c in 0..<channels { dst[c * plane + i] = Float(src[i * channels + c]) }
        }
      }
    }
    return out
  }
}

/// A float image with planar channels (CHW), values nominally in 0...255, channels in the order
/// the source gave them (RGB for colour).
public struct FloatImage: Sendable, Equatable {
  /// Number of channels.
  public var channels: Int
  /// Height in pixels.
  public var height: Int
  /// Width in pixels.
  public var width: Int
  /// `channels * height * width` values, one plane per channel.
  public var pixels: [Float]

  /// A zero image of the given size.
  public init(channels: Int, height: Int, width: Int) {
    self.channels = channels
    self.height = height
    self.width = width
    self.pixels = [Float](repeating: 0, count: channels * height * width)
  }

  /// An image over `pixels` (CHW order).
  public init(channels: Int, height: Int, width: Int, pixels: [Float]) {
    precondition(pixels.count == channels * height * width, "pixel count does not match the size")
    self.channels = channels
    self.height = height
    self.width = width
    self.pixels = pixels
  }

  /// The value at channel `c`, row `y`, column `x`.
  public subscript(c: Int, y: Int, x: Int) -> Float {
    get { pixels[(c * height + y) * width + x] }
    set { pixels[(c * height + y) * width + x] = newValue }
  }
}
