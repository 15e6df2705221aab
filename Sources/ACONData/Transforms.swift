import ACONTensor
import Foundation

/// One step of preprocessing, applied to a float image with the sample's own random generator.
///
/// The generator passed in is derived from (seed, epoch, sample index) by the loader, so the
/// augmentation a sample receives does not depend on which thread decodes it or when.
public protocol ImageTransform: Sendable {
  /// The transformed image.
  func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage
}

/// Leaves the image as it is.
public struct IdentityTransform: ImageTransform {
  public init() {}
  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage { image }
}

/// Applies transforms one after another (torchvision's `Compose`).
public struct Compose: ImageTransform {
  /// The steps, first applied first.
  public let steps: [any ImageTransform]
  public init(_ steps: [any ImageTransform]) { self.steps = steps }
  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    var x = image
    for step in steps { x = step.apply(x, rng: &rng) }
    return x
  }
}

/// Bilinear resampling of the region `top..<top+cropHeight`, `left..<left+cropWidth` of `image`
/// to `height` x `width`, with half-pixel centres (PyTorch's `align_corners=False`, no
/// antialiasing). Cropping and resizing in one pass avoids a copy of the crop.
public func resizeBilinear(
  _ image: FloatImage, top: Int = 0, left: Int = 0, cropHeight: Int? = nil, cropWidth: Int? = nil,
  height: Int, width: Int
) -> FloatImage {
  let ch = cropHeight ?? image.height
  let cw = cropWidth ?? image.width
  var out = FloatImage(channels: image.channels, height: height, width: width)
  if ch == height && cw == width {
    // Same size: an exact copy of the crop.
    for c in 0..<image.channels {
      for y in 0..<height {
        for x in 0..<width { out[c, y, x] = image[c, top + y, left + x] }
      }
    }
    return out
  }
  let sy = Float(ch) / Float(height)
  let sx = Float(cw) / Float(width)
  // Per output column: the two source columns and the weight of the right one.
  var x0 = [Int](repeating: 0, count: width)
  var x1 = [Int](repeating: 0, count: width)
  var wx = [Float](repeating: 0, count: width)
  for x in 0..<width {
    let src = max(0, (Float(x) + 0.5) * sx - 0.5)
    let i = min(Int(src), cw - 1)
    x0[x] = left + i
    x1[x] = left + min(i + 1, cw - 1)
    wx[x] = src - Float(i)
  }
  let plane = image.height * image.width
  let outPlane = height * width
  image.pixels.withUnsafeBufferPointer { src in
    out.pixels.withUnsafeMutableBufferPointer { dst in
      for y in 0..<height {
        let s = max(0, (Float(y) + 0.5) * sy - 0.5)
        let i = min(Int(s), ch - 1)
        let wy = s - Float(i)
        let r0 = (top + i) * image.width
        let r1 = (top + min(i + 1, ch - 1)) * image.width
        for c in 0..<image.channels {
          let p = c * plane
          let o = c * outPlane + y * width
          for x in 0..<width {
            let a = src[p + r0 + x0[x]] + (src[p + r0 + x1[x]] - src[p + r0 + x0[x]]) * wx[x]
            let b = src[p + r1 + x0[x]] + (src[p + r1 + x1[x]] - src[p + r1 + x0[x]]) * wx[x]
            dst[o + x] = a + (b - a) * wy
          }
        }
      }
    }
  }
  return out
}

/// A random crop of random area and aspect ratio, resized to `size` x `size` (torchvision's
/// `RandomResizedCrop`, with bilinear resizing): the reference's training crop.
public struct RandomResizedCrop: ImageTransform {
  /// Output side.
  public let size: Int
  /// Range of the crop's area as a fraction of the image's.
  public let scale: ClosedRange<Double>
  /// Range of the crop's aspect ratio (width / height).
  public let ratio: ClosedRange<Double>

  public init(
    size: Int, scale: ClosedRange<Double> = 0.08...1.0,
    ratio: ClosedRange<Double> = (3.0 / 4.0)...(4.0 / 3.0)
  ) {
    self.size = size
    self.scale = scale
    self.ratio = ratio
  }

  /// The crop (top, left, height, width) for an image of the given size, by torchvision's
  /// procedure: ten tries at a random area and log-uniform ratio, then a centre crop.
  public func cropBox(height: Int, width: Int, rng: inout RandomGenerator)
    -> (top: Int, left: Int, height: Int, width: Int)
  {
    let area = Double(height * width)
    let logLow = Foundation.log(ratio.lowerBound)
    let logHigh = Foundation.log(ratio.upperBound)
    for _ in 0..<10 {
      let target =
        area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * rng.nextDouble())
      let aspect = exp(logLow + (logHigh - logLow) * rng.nextDouble())
      let w = Int((target * aspect).squareRoot().rounded())
      let h = Int((target / aspect).squareRoot().rounded())
      if w > 0 && h > 0 && w <= width && h <= height {
        let top = Int(rng.next() % UInt64(height - h + 1))
        let left = Int(rng.next() % UInt64(width - w + 1))
        return (top, left, h, w)
      }
    }
    let inRatio = Double(width) / Double(height)
    var w = width
    var h = height
    if inRatio < ratio.lowerBound {
      h = Int((Double(w) / ratio.lowerBound).rounded())
    } else if inRatio > ratio.upperBound {
      w = Int((Double(h) * ratio.upperBound).rounded())
    }
    return ((height - h) / 2, (width - w) / 2, h, w)
  }

  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    let box = cropBox(height: image.height, width: image.width, rng: &rng)
    return resizeBilinear(
      image, top: box.top, left: box.left, cropHeight: box.height, cropWidth: box.width,
      height: size, width: size)
  }
}

/// Resizes so that the shorter side is `shortSide`, keeping the aspect ratio (torchvision's
/// `Resize(int)`: the long side is truncated, `int(long * short_side / short)`).
public struct Resize: ImageTransform {
  /// Target length of the shorter side.
  public let shortSide: Int
  public init(shortSide: Int) { self.shortSide = shortSide }
  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    let h = image.height
    let w = image.width
    let (oh, ow) =
      w <= h
      ? (Int(Double(shortSide) * Double(h) / Double(w)), shortSide)
      : (shortSide, Int(Double(shortSide) * Double(w) / Double(h)))
    if oh == h && ow == w { return image }
    return resizeBilinear(image, height: oh, width: ow)
  }
}

/// Crops the centre `height` x `width` (torchvision's `CenterCrop`: the offset is
/// `round((H - h) / 2)`; an image smaller than the crop is zero-padded first).
public struct CenterCrop: ImageTransform {
  /// Output height.
  public let height: Int
  /// Output width.
  public let width: Int
  public init(size: Int) { (height, width) = (size, size) }
  public init(height: Int, width: Int) { (self.height, self.width) = (height, width) }

  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    // Offsets of the crop in the image; negative where padding is needed.
    let top = Int((Double(image.height - height) / 2).rounded(.toNearestOrEven))
    let left = Int((Double(image.width - width) / 2).rounded(.toNearestOrEven))
    return crop(image, top: top, left: left, height: height, width: width)
  }
}

/// The `height` x `width` window of `image` at (`top`, `left`); outside the image reads zero.
public func crop(_ image: FloatImage, top: Int, left: Int, height: Int, width: Int) -> FloatImage {
  var out = FloatImage(channels: image.channels, height: height, width: width)
  let y0 = max(0, -top)
  let y1 = min(height, image.height - top)
  let x0 = max(0, -left)
  let x1 = min(width, image.width - left)
  guard y0 < y1, x0 < x1 else { return out }
  image.pixels.withUnsafeBufferPointer { src in
    out.pixels.withUnsafeMutableBufferPointer { dst in
      for c in 0..<image.channels {
        for y in y0..<y1 {
          let s = (c * image.height + top + y) * image.width + left
          let d = (c * height + y) * width
          for x in x0..<x1 { dst[d + x] = src[s + x] }
        }
      }
    }
  }
  return out
}

/// Mirrors the image left to right with probability `p`.
public struct RandomHorizontalFlip: ImageTransform {
  /// Probability of a flip.
  public let p: Double
  public init(p: Double = 0.5) { self.p = p }
  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    guard rng.nextDouble() < p else { return image }
    return Self.flip(image)
  }

  /// The mirror image.
  public static func flip(_ image: FloatImage) -> FloatImage {
    var out = image
    let w = image.width
    image.pixels.withUnsafeBufferPointer { src in
      out.pixels.withUnsafeMutableBufferPointer { dst in
        for row in 0..<(image.channels * image.height) {
          let o = row * w
          for x in 0..<w { dst[o + x] = src[o + w - 1 - x] }
        }
      }
    }
    return out
  }
}

/// Random padding-and-crop (torchvision's `RandomCrop(size, padding)`, zero fill): the usual
/// CIFAR augmentation.
public struct RandomCrop: ImageTransform {
  /// Output height and width.
  public let size: Int
  /// Zero border added on every side before cropping.
  public let padding: Int
  public init(size: Int, padding: Int = 0) {
    self.size = size
    self.padding = padding
  }
  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    let ph = image.height + 2 * padding
    let pw = image.width + 2 * padding
    let top = Int(rng.next() % UInt64(max(1, ph - size + 1))) - padding
    let left = Int(rng.next() % UInt64(max(1, pw - size + 1))) - padding
    return crop(image, top: top, left: left, height: size, width: size)
  }
}

/// Random brightness, contrast and saturation changes, applied in a random order (torchvision's
/// `ColorJitter` without hue). Each factor is drawn uniformly from `[max(0, 1 - s), 1 + s]`;
/// values are clamped to 0...255 after each step, as the 8-bit pipeline does.
/// Expects an RGB image; other channel counts get brightness and contrast only.
public struct ColorJitter: ImageTransform {
  /// Strength of the brightness change.
  public let brightness: Double
  /// Strength of the contrast change.
  public let contrast: Double
  /// Strength of the saturation change.
  public let saturation: Double

  public init(brightness: Double = 0.4, contrast: Double = 0.4, saturation: Double = 0.4) {
    self.brightness = brightness
    self.contrast = contrast
    self.saturation = saturation
  }

  static func factor(_ s: Double, _ rng: inout RandomGenerator) -> Float {
    Float(max(0, 1 - s) + (1 + s - max(0, 1 - s)) * rng.nextDouble())
  }

  public func apply(_ image: FloatImage, rng: inout RandomGenerator) -> FloatImage {
    // A random order of the three steps (Fisher-Yates on [0, 1, 2]), then the three factors.
    var order = [0, 1, 2]
    for i in stride(from: 2, to: 0, by: -1) {
      order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
    let fb = Self.factor(brightness, &rng)
    let fc = Self.factor(contrast, &rng)
    let fs = Self.factor(saturation, &rng)
    var x = image
    for step in order {
      switch step {
      case 0 where brightness > 0: Self.blend(&x, factor: fb) { _ in 0 }
      case 1 where contrast > 0:
        let mean = Self.grayMean(x)
        Self.blend(&x, factor: fc) { _ in mean }
      case 2 where saturation > 0 && x.channels == 3:
        let gray = Self.gray(x)
        Self.blend(&x, factor: fs) { gray[$0] }
      default: break
      }
    }
    return x
  }

  /// `x = clamp(f * x + (1 - f) * other(pixel), 0, 255)` on every channel.
  static func blend(_ x: inout FloatImage, factor f: Float, other: (Int) -> Float) {
    let plane = x.height * x.width
    let channels = x.channels
    x.pixels.withUnsafeMutableBufferPointer { p in
      for i in 0..<plane {
        let o = (1 - f) * other(i)
        for c in 0..<channels {
          p[c * plane + i] = min(255, max(0, f * p[c * plane + i] + o))
        }
      }
    }
  }

  /// Luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B) of every pixel; the single channel itself
  /// for a gray image.
  static func gray(_ x: FloatImage) -> [Float] {
    let plane = x.height * x.width
    if x.channels != 3 { return Array(x.pixels[0..<plane]) }
    var g = [Float](repeating: 0, count: plane)
    x.pixels.withUnsafeBufferPointer { p in
      for i in 0..<plane { g[i] = 0.299 * p[i] + 0.587 * p[plane + i] + 0.114 * p[2 * plane + i] }
    }
    return g
  }

  static func grayMean(_ x: FloatImage) -> Float {
    let g = gray(x)
    var s: Double = 0
    for v in g { s += Double(v) }
    return Float(s / Double(max(1, g.count)))
  }
}

/// The reference's preprocessing recipes (paper, section 5).
public enum Transforms {
  /// Training: RandomResizedCrop(size, scale 0.08...1, ratio 3/4...4/3), ColorJitter(0.4, 0.4,
  /// 0.4), random horizontal flip.
  public static func imageNetTrain(size: Int = 224) -> Compose {
    Compose([RandomResizedCrop(size: size), ColorJitter(), RandomHorizontalFlip()])
  }

  /// Evaluation: shorter side to `resize` (bilinear), centre crop `size`.
  public static func imageNetEval(resize: Int = 256, size: Int = 224) -> Compose {
    Compose([Resize(shortSide: resize), CenterCrop(size: size)])
  }

  /// CIFAR training: 4-pixel zero padding with a random 32x32 crop, random horizontal flip.
  public static func cifarTrain() -> Compose {
    Compose([RandomCrop(size: 32, padding: 4), RandomHorizontalFlip()])
  }
}
