import Testing

@testable import ACONKernels

/// First-layer geometries (few input taps, large images): their weight gradient is split over
/// images, each worker with serial products. Same reference check as every other path, including that
/// dw alone has the same bits as dw requested with dx; stride 2 also runs the vector unfold.
@Suite("Stem weight gradient")
struct StemWeightGradientTests {
  func geometry(
    _ n: Int, _ cin: Int, _ h: Int, _ w: Int, _ cout: Int, _ kh: Int, _ kw: Int, s: Int = 1,
    p: Int = 0
  ) -> ConvGeometry {
    ConvGeometry(
      batch: n, inChannels: cin, height: h, width: w, outChannels: cout, kernelHeight: kh,
      kernelWidth: kw, stride: s, padding: p)
  }

  @Test func stemGeometriesMatchReference() {
    let cases = [
      geometry(3, 3, 48, 48, 8, 3, 3, p: 1),
      geometry(3, 3, 100, 100, 8, 3, 3, s: 2, p: 1),
      geometry(2, 1, 50, 47, 4, 3, 3, p: 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(g.outHeight * g.outWidth >= ConvolutionKernel.unfoldedTargetColumns)
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(700 + 2 * k + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }

  /// The stride-2 3x3 stems of one to four channels (``StemKernel`` where vectors are 16 floats
  /// wide, the general path elsewhere): even and odd widths and heights, rows shorter than a
  /// vector, rows of whole vectors with one float more or less, one image and several, 8 to 24
  /// output channels, with and without a bias.
  @Test func strideTwoStemsMatchReference() {
    let cases = [
      geometry(2, 3, 31, 29, 8, 3, 3, s: 2, p: 1),
      geometry(1, 3, 64, 64, 24, 3, 3, s: 2, p: 1),
      geometry(3, 1, 33, 34, 16, 3, 3, s: 2, p: 1),
      geometry(2, 4, 5, 3, 8, 3, 3, s: 2, p: 1),
      geometry(1, 2, 1, 1, 8, 3, 3, s: 2, p: 1),
      geometry(2, 3, 62, 30, 24, 3, 3, s: 2, p: 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(StemKernel.applies(g) == (WideFloat.scalarCount == 16))
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(740 + 2 * k + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }

  /// The stride-1 3x3 stems of one to four channels (the small-image networks'; ``StemKernel``
  /// where vectors are 16 floats wide): Fashion-MNIST's 1x28x28 into 24 channels, rows of whole
  /// vectors (16, 32 wide) and not, rows shorter than a vector, a 1x1 image.
  @Test func strideOneStemsMatchReference() {
    let cases = [
      geometry(2, 1, 28, 28, 24, 3, 3, p: 1),
      geometry(3, 3, 17, 31, 8, 3, 3, p: 1),
      geometry(2, 4, 9, 16, 16, 3, 3, p: 1),
      geometry(1, 2, 5, 3, 8, 3, 3, p: 1),
      geometry(2, 1, 4, 32, 8, 3, 3, p: 1),
      geometry(3, 2, 1, 1, 8, 3, 3, p: 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(StemKernel.applies(g) == (WideFloat.scalarCount == 16))
      for bias in [false, true] {
        let failures = checkAgainstReference(
          g, bias: bias, seed: UInt64(780 + 2 * k + (bias ? 1 : 0)))
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }

  /// Where vectors are 16 floats wide, a stem's weight gradient unfolds each image a run of
  /// output rows at a time: runs of whole vectors and not (45 and 40 columns a row), a short
  /// last run (one row), 3x3 and ResNet's 7x7 taps, one image per worker and several.
  @Test func weightGradientByRunsOfOutputRowsMatchesReference() {
    let cases = [
      geometry(2, 3, 90, 90, 24, 3, 3, s: 2, p: 1),
      geometry(5, 3, 80, 80, 16, 7, 7, s: 2, p: 3),
      geometry(3, 2, 130, 80, 8, 3, 3, s: 2, p: 1),
    ]
    for (k, g) in cases.enumerated() {
      let rows = ConvolutionKernel.weightGradientOutputRows(g)
      if WideFloat.scalarCount == 16 {
        #expect(rows < g.outHeight && g.outHeight % rows != 0, "\(g): \(rows) rows a run")
      } else {
        #expect(rows == g.outHeight)
      }
      // Each weight's gradient sums 8,000 to 10,000 products (and each bias's 10,000 terms).
      let failures = checkAgainstReference(g, bias: k == 1, seed: UInt64(760 + k))
      #expect(failures.isEmpty, "\(failures)")
    }
  }

  /// 1x1 layers with one product per image (at least ``ConvolutionKernel/pointwiseDirectColumns``
  /// pixels) and small weights take the same split over images, reading the input directly.
  @Test func smallPointwiseGeometriesMatchReference() {
    let cases = [
      geometry(3, 24, 28, 28, 24, 1, 1),
      geometry(5, 20, 24, 24, 12, 1, 1),
    ]
    for (k, g) in cases.enumerated() {
      #expect(g.outHeight * g.outWidth >= ConvolutionKernel.pointwiseDirectColumns)
      for bias in [false, true] {
        let seed = UInt64(720 + 2 * k + (bias ? 1 : 0))
        let failures = checkAgainstReference(g, bias: bias, seed: seed)
        #expect(failures.isEmpty, "\(failures)")
      }
    }
  }
}
