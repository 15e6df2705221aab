import Testing

@testable import ACONKernels

/// Batch norm on planes of one float (`[N, C]`, meta-ACON's generator) runs across the channels
/// of each row (`BatchNormKernel.*Rows`); it must give the bits of the channel-by-channel
/// kernels, which the other suites check against formulas, whatever the options.
@Suite("Batch norm on [N, C] rows")
struct BatchNormRowsTests {
  static func values(_ count: Int, seed: UInt64, offset: Float = 0) -> [Float] {
    NormalizationKernelTests.values(count, seed: seed).map { $0 + offset }
  }

  /// The first index where `a` and `b` differ in any bit, or nil.
  static func firstDifference(_ a: [Float], _ b: [Float]) -> Int? {
    a.count != b.count ? 0 : a.indices.first { a[$0].bitPattern != b[$0].bitPattern }
  }

  /// `[batch, channels]`: a few channels, more channels than one chunk of work holds (split
  /// over the cores), a batch of 2; inputs offset far from zero against their spread, a first
  /// row far from the others.
  @Test(arguments: [(32, 96), (7, 5), (2, 3), (64, 1100), (300, 40)])
  func rowsMatchTheChannelKernelsBitForBit(shape: (Int, Int)) {
    let (n, c) = shape
    var x = Self.values(n * c, seed: 11, offset: 3)
    for ch in 0..<c { x[ch] += 50 }
    let dy = Self.values(n * c, seed: 12)
    let residual = Self.values(n * c, seed: 13)
    let weight = Self.values(c, seed: 14)
    let bias = Self.values(c, seed: 15)

    var (mean, variance, centred) = (
      [Float](repeating: 0, count: c), [Float](repeating: 0, count: c),
      [Float](repeating: 0, count: n * c)
    )
    var (mean1, variance1, centred1) = (mean, variance, centred)
    BatchNormKernel.statistics(
      x, batch: n, channels: c, plane: 1, mean: &mean, variance: &variance,
      centredPlaneMeans: &centred)
    BatchNormKernel.statisticsByChannel(
      x, batch: n, channels: c, plane: 1, mean: &mean1, variance: &variance1,
      centredPlaneMeans: &centred1)
    #expect(Self.firstDifference(mean, mean1) == nil)
    #expect(Self.firstDifference(variance, variance1) == nil)
    #expect(Self.firstDifference(centred, centred1) == nil)
    let invStd = variance.map { 1 / ($0 + 1e-5).squareRoot() }

    for (relu, withResidual) in [(false, false), (true, false), (true, true)] {
      var (y, y1) = ([Float](repeating: 0, count: n * c), [Float](repeating: 0, count: n * c))
      residual.withUnsafeBufferPointer { r in
        let res = withResidual ? r.baseAddress : nil
        BatchNormKernel.normalize(
          x, &y, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd, weight: weight,
          bias: bias, relu: relu, residual: res)
        BatchNormKernel.normalizeByChannel(
          x, &y1, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd, weight: weight,
          bias: bias, relu: relu, residual: res)
      }
      #expect(Self.firstDifference(y, y1) == nil, "relu \(relu), residual \(withResidual)")
    }

    for relu in [false, true] {
      var (dx, dw, db) = (
        [Float](repeating: 0, count: n * c), [Float](repeating: 0, count: c),
        [Float](repeating: 0, count: c)
      )
      var (dx1, dw1, db1) = (dx, dw, db)
      BatchNormKernel.backwardTraining(
        x, dy, dx: &dx, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd,
        weight: weight, bias: bias, relu: relu, dweight: &dw, dbias: &db)
      BatchNormKernel.backwardTrainingByChannel(
        x, dy, dx: &dx1, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd,
        weight: weight, bias: bias, relu: relu, dweight: &dw1, dbias: &db1)
      #expect(Self.firstDifference(dx, dx1) == nil, "relu \(relu)")
      #expect(Self.firstDifference(dw, dw1) == nil, "relu \(relu)")
      #expect(Self.firstDifference(db, db1) == nil, "relu \(relu)")

      // Only the parameters' gradients (no input gradient wanted), and no affine parameters.
      var (dw2, db2) = ([Float](repeating: 0, count: c), [Float](repeating: 0, count: c))
      BatchNormKernel.backwardTraining(
        x, dy, dx: nil, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd,
        weight: weight, bias: bias, relu: relu, dweight: &dw2, dbias: &db2)
      #expect(Self.firstDifference(dw2, dw) == nil && Self.firstDifference(db2, db) == nil)
      var (dx3, dx4) = ([Float](repeating: 0, count: n * c), [Float](repeating: 0, count: n * c))
      BatchNormKernel.backwardTraining(
        x, dy, dx: &dx3, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd,
        weight: nil, bias: nil, relu: relu, dweight: nil, dbias: nil)
      BatchNormKernel.backwardTrainingByChannel(
        x, dy, dx: &dx4, batch: n, channels: c, plane: 1, mean: mean, invStd: invStd,
        weight: nil, bias: nil, relu: relu, dweight: nil, dbias: nil)
      #expect(Self.firstDifference(dx3, dx4) == nil, "relu \(relu), no affine parameters")
    }
  }
}
