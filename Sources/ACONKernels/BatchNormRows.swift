/// Batch norm of `[N, C]` input (or `[N, C, 1, 1]`: plane 1), as rows of channels.
///
/// The kernels of ``BatchNormKernel`` walk one channel at a time through the batch, which on
/// planes of one float costs a few loop setups and a sum across a vector's lanes per float:
/// about 0.3 µs per channel, so that a `[32, 96, 1, 1]` batch norm (meta-ACON's switching-factor
/// generator, two per activation: 74 in a meta-ACON ShuffleNetV2) took 34 µs forward, where a
/// `[32, 96, 4, 4]` one took the same. Here the rows are read as they lie, the channels side
/// by side. Every value is computed with the operations of the channel-by-channel kernels in
/// the same order (the provisional mean, Float64 sums row by row, the same multiply-adds), so
/// the results are the same bits.
extension BatchNormKernel {
  /// Channels per chunk of work: a chunk reads `chunk x n` floats.
  static func rowChannelChunk(batch n: Int) -> Int { max(16, 32_768 / max(1, n)) }

  /// ``statistics(_:batch:channels:plane:mean:variance:centredPlaneMeans:)`` for plane 1.
  static func statisticsOfRows(
    _ x: UnsafePointer<Float>, batch n: Int, channels c: Int, mean: UnsafeMutablePointer<Float>,
    variance: UnsafeMutablePointer<Float>, centredPlaneMeans: UnsafeMutablePointer<Float>?
  ) {
    let count = Double(n)
    Parallel.forRanges(c, minimumChunk: rowChannelChunk(batch: n)) { range in
      let width = range.count
      withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * width) { sums in
        let linear = sums.baseAddress!
        let squares = linear + width
        linear.update(repeating: 0, count: 2 * width)
        // The provisional mean of each channel: its value in the first row.
        let provisional = x + range.lowerBound
        for b in 0..<n {
          let row = x + b * c + range.lowerBound
          for j in 0..<width {
            let d = row[j] - provisional[j]
            linear[j] += Double(d)
            squares[j] += Double(d * d)
            centredPlaneMeans?[b * c + range.lowerBound + j] = d
          }
        }
        for j in 0..<width {
          let ch = range.lowerBound + j
          let correction = linear[j] / count
          mean[ch] = Float(Double(provisional[j]) + correction)
          variance[ch] = Float(max(0, squares[j] / count - correction * correction))
        }
        guard let centredPlaneMeans else { return }
        for b in 0..<n {
          for j in 0..<width {
            let q = b * c + range.lowerBound + j
            let shift = Double(provisional[j]) - Double(mean[range.lowerBound + j])
            centredPlaneMeans[q] = Float(Double(centredPlaneMeans[q]) + shift)
          }
        }
      }
    }
  }

  /// ``normalize(_:_:batch:channels:plane:mean:invStd:weight:bias:relu:residual:)`` for plane 1.
  static func normalizeRows(
    _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch n: Int, channels c: Int,
    mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, weight: UnsafePointer<Float>?,
    bias: UnsafePointer<Float>?, relu: Bool, residual: UnsafePointer<Float>?
  ) {
    Parallel.forRanges(c, minimumChunk: rowChannelChunk(batch: n)) { range in
      withAffineCoefficients(range, mean, invStd, weight, bias) { scale, shift in
        for b in 0..<n {
          let o = b * c + range.lowerBound
          for j in 0..<range.count {
            var v = shift[j].plusProduct(x[o + j], scale[j])
            if let residual { v += residual[o + j] }
            y[o + j] = relu && v < 0 ? 0 : v
          }
        }
      }
    }
  }

  /// ``backwardTraining(_:_:dx:batch:channels:plane:mean:invStd:weight:bias:relu:dweight:dbias:)``
  /// for plane 1.
  static func backwardTrainingRows(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?,
    batch n: Int, channels c: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, relu: Bool,
    dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?
  ) {
    let count = Double(n)
    Parallel.forRanges(c, minimumChunk: rowChannelChunk(batch: n)) { range in
      let width = range.count
      withAffineCoefficients(range, mean, invStd, weight, bias) { scale, shift in
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * width) { sums in
          let sumDy = sums.baseAddress!
          let sumDyXc = sumDy + width
          sumDy.update(repeating: 0, count: 2 * width)
          // gradientSums: g gated by the fused ReLU, both sums in Float64 row by row.
          @inline(__always) func gated(_ o: Int, _ j: Int) -> Float {
            relu && shift[j].plusProduct(x[o + j], scale[j]) <= 0 ? 0 : dy[o + j]
          }
          for b in 0..<n {
            let o = b * c + range.lowerBound
            for j in 0..<width {
              let g = gated(o, j)
              sumDy[j] += Double(g)
              sumDyXc[j] += Double(g * (x[o + j] - mean[range.lowerBound + j]))
            }
          }
          guard let dx else {
            for j in 0..<width {
              let ch = range.lowerBound + j
              dbias?[ch] = Float(sumDy[j])
              dweight?[ch] = Float(sumDyXc[j] * Double(invStd[ch]))
            }
            return
          }
          // trainingInputGradient: dx = g k + ((x - mean) q + r), from the sums.
          withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * width) { coefficients in
            let (k, q, r) = (
              coefficients.baseAddress!, coefficients.baseAddress! + width,
              coefficients.baseAddress! + 2 * width
            )
            for j in 0..<width {
              let ch = range.lowerBound + j
              let sumDyXhat = sumDyXc[j] * Double(invStd[ch])
              dbias?[ch] = Float(sumDy[j])
              dweight?[ch] = Float(sumDyXhat)
              (k[j], q[j], r[j]) = trainingCoefficients(
                weight: weight?[ch] ?? 1, invStd: invStd[ch], sumDy: sumDy[j],
                sumDyXhat: sumDyXhat, count: count)
            }
            for b in 0..<n {
              let o = b * c + range.lowerBound
              for j in 0..<width {
                let g = gated(o, j)
                dx[o + j] = g * k[j] + ((x[o + j] - mean[range.lowerBound + j]) * q[j] + r[j])
              }
            }
          }
        }
      }
    }
  }

  /// Calls `body` with the batch norm's `scale` and `shift`
  /// (``affineCoefficients(channels:mean:invStd:weight:bias:scale:shift:)``) of the channels in
  /// `range`, indexed from 0.
  @inline(__always)
  static func withAffineCoefficients(
    _ range: Range<Int>, _ mean: UnsafePointer<Float>, _ invStd: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>?, _ bias: UnsafePointer<Float>?,
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
  ) {
    let (first, width) = (range.lowerBound, range.count)
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * width) { coefficients in
      let (scale, shift) = (coefficients.baseAddress!, coefficients.baseAddress! + width)
      affineCoefficients(
        channels: width, mean: mean + first, invStd: invStd + first,
        weight: weight.map { $0 + first }, bias: bias.map { $0 + first }, scale: scale,
        shift: shift)
      body(scale, shift)
    }
  }
}
