extension BatchNormKernel {
  /// Batch norm's input gradient in training mode from per-channel sums already taken (over
  /// more than this batch: the replicas of a data-parallel step): `sumDy[ch]` = `sum(g)`,
  /// `sumDyXhat[ch]` = `sum(g * xhat)` over `count` elements per channel, `g` being `dy`
  /// gated by the fused ReLU when `relu`. Same formula as
  /// ``backwardTraining(_:_:dx:batch:channels:plane:mean:invStd:weight:bias:relu:dweight:dbias:)``.
  public static func inputGradientFromSums(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    batch n: Int, channels c: Int, plane: Int, mean: UnsafePointer<Float>,
    invStd: UnsafePointer<Float>, weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
    relu: Bool, sumDy: UnsafePointer<Float>, sumDyXhat: UnsafePointer<Float>, count: Int
  ) {
    let stride = c * plane
    // Channel by channel, or in blocks of channels a few images at a time (ChannelVisits).
    let visits = ChannelVisits.forLayer(channels: c, plane: plane)
    Parallel.forRanges(c, minimumChunk: channelChunk(batch: n, plane: plane)) { range in
      visits.forEach(channelsIn: range, images: 0..<n) { ch, images in
        let (scale, shift) = affine(ch, mean: mean, invStd: invStd, weight: weight, bias: bias)
        trainingInputGradient(
          x + ch * plane, dy + ch * plane, dx + ch * plane, rows: images, plane: plane,
          stride: stride, mean: mean[ch], invStd: invStd[ch], weight: weight?[ch] ?? 1,
          sumDy: Double(sumDy[ch]), sumDyXhat: Double(sumDyXhat[ch]), count: Double(count),
          relu: relu, scale: scale, shift: shift)
      }
    }
  }
}
