import ACONData
import ACONTensor
import Testing

@Suite("Transforms")
struct TransformTests {
  static func ramp(channels: Int = 3, height: Int, width: Int) -> FloatImage {
    let n = channels * height * width
    return FloatImage(
      channels: channels, height: height, width: width, pixels: (0..<n).map { Float($0 * 37 % 256) }
    )
  }

  @Test func bilinearMatchesPyTorch() {
    // scripts/make_data_goldens.py: F.interpolate(bilinear, align_corners=False, antialias=False).
    let x = FloatImage(
      channels: 2, height: 4, width: 5, pixels: (0..<40).map { Float($0 * 7 % 31) })
    let a = resizeBilinear(x, height: 3, width: 7)
    let expectedA: [Float] = [
      0.66667, 4.66667, 9.66667, 14.66667, 19.66667, 22.45238, 23.5, 6.0, 10.0, 15.0, 20.0, 25.0,
      16.71428, 3.0, 11.33333, 15.33333, 20.33334, 25.33333, 11.88095, 7.28571, 8.33333, 16.66667,
      20.66667, 24.19047, 25.5, 12.04762, 9.66667, 13.66667, 22.0, 17.14286, 11.07143, 5.0, 10.0,
      15.0, 19.0, 27.33333, 13.61905, 5.33333, 10.33333, 15.33333, 20.33333, 24.33333,
    ]
    #expect(zip(a.pixels, expectedA).allSatisfy { abs($0 - $1) < 1e-4 })
    let b = resizeBilinear(x, height: 6, width: 2)
    let expectedB: [Float] = [
      5.25, 22.75, 7.25, 20.875, 9.91667, 19.66667, 12.58333, 22.33333, 15.25, 13.375, 17.25, 3.75,
      21.25, 7.75, 23.25, 9.75, 22.04166, 12.41667, 9.20833, 15.08333, 8.0, 17.75, 10.0, 19.75,
    ]
    #expect(zip(b.pixels, expectedB).allSatisfy { abs($0 - $1) < 1e-4 })
  }

  @Test func resizeAndCenterCrop() {
    var rng = RandomGenerator(seed: 1)
    let wide = Self.ramp(height: 200, width: 300)
    let r = Resize(shortSide: 256).apply(wide, rng: &rng)
    #expect((r.height, r.width) == (256, 384))
    let tall = Resize(shortSide: 10).apply(Self.ramp(height: 33, width: 20), rng: &rng)
    #expect((tall.height, tall.width) == (16, 10))
    // Centre crop of 6x8 to 4: offsets round((6-4)/2) = 1 and round((8-4)/2) = 2.
    let x = Self.ramp(height: 6, width: 8)
    let c = CenterCrop(size: 4).apply(x, rng: &rng)
    for ch in 0..<3 {
      for y in 0..<4 { for xx in 0..<4 { #expect(c[ch, y, xx] == x[ch, y + 1, xx + 2]) } }
    }
    // Larger than the image: zero padding around it.
    let p = CenterCrop(size: 10).apply(x, rng: &rng)
    #expect(
      p[0, 0, 0] == 0 && p[1, 2, 1] == x[1, 0, 0] && p[2, 7, 8] == x[2, 5, 7] && p[0, 9, 9] == 0)
    let eval = Transforms.imageNetEval().apply(Self.ramp(height: 300, width: 400), rng: &rng)
    #expect((eval.channels, eval.height, eval.width) == (3, 224, 224))
  }

  @Test func flipIsExact() {
    var rng = RandomGenerator(seed: 2)
    let x = Self.ramp(height: 5, width: 7)
    let f = RandomHorizontalFlip(p: 1).apply(x, rng: &rng)
    for ch in 0..<3 {
      for y in 0..<5 { for xx in 0..<7 { #expect(f[ch, y, xx] == x[ch, y, 6 - xx]) } }
    }
    #expect(RandomHorizontalFlip.flip(f) == x)
    #expect(RandomHorizontalFlip(p: 0).apply(x, rng: &rng) == x)
    var flips = 0
    for _ in 0..<200 where RandomHorizontalFlip().apply(x, rng: &rng) != x { flips += 1 }
    #expect(flips > 60 && flips < 140)
  }

  @Test func randomResizedCropBoxes() {
    var rng = RandomGenerator(seed: 3)
    let t = RandomResizedCrop(size: 16)
    for _ in 0..<300 {
      let b = t.cropBox(height: 60, width: 80, rng: &rng)
      #expect(b.top >= 0 && b.left >= 0 && b.top + b.height <= 60 && b.left + b.width <= 80)
      let area = Double(b.height * b.width) / 4800
      let ratio = Double(b.width) / Double(b.height)
      #expect(area >= 0.07 && area <= 1.0 && ratio > 0.7 && ratio < 1.4)
    }
    // An extreme aspect ratio falls back to a centre crop of the allowed ratio.
    let f = t.cropBox(height: 2, width: 100, rng: &rng)
    #expect(f.height >= 1 && f.width <= 100 && f.left + f.width <= 100)
    let x = Self.ramp(height: 60, width: 80)
    var r1 = RandomGenerator(seed: 9)
    var r2 = RandomGenerator(seed: 9)
    let a = t.apply(x, rng: &r1)
    #expect((a.channels, a.height, a.width) == (3, 16, 16))
    #expect(a == t.apply(x, rng: &r2))
    // Whole-image crop resized to the same size is the identity.
    let whole = RandomResizedCrop(size: 8, scale: 1...1, ratio: 1...1).apply(
      Self.ramp(height: 8, width: 8), rng: &r1)
    #expect(whole == Self.ramp(height: 8, width: 8))
  }

  @Test func colorJitterRangeAndDeterminism() {
    let x = Self.ramp(height: 12, width: 12)
    let j = ColorJitter()
    var r1 = RandomGenerator(seed: 4)
    var r2 = RandomGenerator(seed: 4)
    for _ in 0..<20 {
      let a = j.apply(x, rng: &r1)
      #expect(a == j.apply(x, rng: &r2))
      #expect(a.pixels.allSatisfy { $0 >= 0 && $0 <= 255 })
    }
    #expect(ColorJitter(brightness: 0, contrast: 0, saturation: 0).apply(x, rng: &r1) == x)
    // Brightness alone scales every value by one factor (below the clamp).
    let dark = FloatImage(channels: 3, height: 2, width: 2, pixels: (1...12).map { Float($0) })
    let b = ColorJitter(brightness: 0.4, contrast: 0, saturation: 0).apply(dark, rng: &r1)
    let f = b.pixels[0] / dark.pixels[0]
    #expect(f >= 0.6 && f <= 1.4)
    #expect(zip(b.pixels, dark.pixels).allSatisfy { abs($0 - f * $1) < 1e-3 })
    // Saturation keeps a gray image gray.
    let gray = FloatImage(
      channels: 3, height: 1, width: 3, pixels: [10, 100, 200, 10, 100, 200, 10, 100, 200])
    let s = ColorJitter(brightness: 0, contrast: 0, saturation: 0.4).apply(gray, rng: &r1)
    #expect(zip(s.pixels, gray.pixels).allSatisfy { abs($0 - $1) < 1e-3 })
  }

  @Test func padAndCropIsAShiftedWindow() {
    var rng = RandomGenerator(seed: 5)
    let x = Self.ramp(height: 32, width: 32)
    let t = Transforms.cifarTrain()
    for _ in 0..<10 {
      let y = RandomCrop(size: 32, padding: 4).apply(x, rng: &rng)
      #expect((y.height, y.width) == (32, 32))
      // Find the shift from a nonzero pixel of the centre and check the whole window.
      var found = false
      for dy in -4...4 {
        for dx in -4...4 where !found {
          if y == crop(x, top: dy, left: dx, height: 32, width: 32) { found = true }
        }
      }
      #expect(found)
      let z = t.apply(x, rng: &rng)
      #expect(z.pixels.count == 3 * 32 * 32)
    }
    let train = Transforms.imageNetTrain().apply(Self.ramp(height: 50, width: 40), rng: &rng)
    #expect((train.channels, train.height, train.width) == (3, 224, 224))
    #expect(train.pixels.allSatisfy { $0 >= 0 && $0 <= 255 })
  }
}
