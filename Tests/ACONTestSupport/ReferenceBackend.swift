import ACONKernels
import ACONTensor
import Foundation

/// A deliberately simple second ``ComputeBackend``: every op as plain scalar loops that follow
/// the definitions (PyTorch's documentation, the paper's formulas), sums in Float64, no SIMD, no
/// threads, no fused arithmetic tricks. Tests run whole training steps on it and check that the
/// fast CPU backend agrees, and it shows that a backend plugs in from outside `ACONTensor`.
///
/// Dropout masks come from its own generator (SplitMix64 per element), so they differ from the
/// CPU backend's for the same seed; everything else computes the same function.
public final class ReferenceBackend: ComputeBackend {
  public let name = "reference"

  public init() {}

  /// One shared instance, so that tensors made in different tests share a device.
  public static let device = Device(ReferenceBackend())

  private func read(_ t: Tensor) -> UnsafePointer<Float> { t.data }
  private func write(_ t: Tensor) -> UnsafeMutablePointer<Float> { t.mutableData }
  private func store(_ values: [Double], _ t: Tensor) {
    let p = write(t)
    for i in 0..<values.count { p[i] = Float(values[i]) }
  }
  private func dims(_ x: Tensor) -> (n: Int, c: Int, plane: Int) {
    (x.shape[0], x.shape[1], x.rank == 4 ? x.shape[2] * x.shape[3] : 1)
  }

  // MARK: Memory

  public func fill(_ out: Tensor, with value: Float) {
    for i in 0..<out.count { write(out)[i] = value }
  }

  public func copy(_ x: Tensor, into out: Tensor) {
    for i in 0..<x.count { write(out)[i] = read(x)[i] }
  }

  public func copyBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int
  ) {
    let (s, d) = (read(source), write(destination))
    forEachBlockElement(
      sourceStart, sourceStride, destinationStart, destinationStride, blocks, length
    ) {
      d[$1] = s[$0]
    }
  }

  public func addBlocks(
    from source: Tensor, sourceStart: Int, sourceStride: Int, into destination: Tensor,
    destinationStart: Int, destinationStride: Int, blocks: Int, length: Int
  ) {
    let (s, d) = (read(source), write(destination))
    forEachBlockElement(
      sourceStart, sourceStride, destinationStart, destinationStride, blocks, length
    ) {
      d[$1] += s[$0]
    }
  }

  /// `body(source index, destination index)` for every element of `blocks` runs of `length`.
  private func forEachBlockElement(
    _ sourceStart: Int, _ sourceStride: Int, _ destinationStart: Int, _ destinationStride: Int,
    _ blocks: Int, _ length: Int, _ body: (Int, Int) -> Void
  ) {
    for b in 0..<blocks {
      for i in 0..<length {
        body(sourceStart + b * sourceStride + i, destinationStart + b * destinationStride + i)
      }
    }
  }

  public func fillBlocks(
    _ out: Tensor, with value: Float, start: Int, stride: Int, blocks: Int, length: Int
  ) {
    let d = write(out)
    for b in 0..<blocks {
      for i in 0..<length { d[start + b * stride + i] = value }
    }
  }

  // MARK: Elementwise

  /// The flat index into a tensor of `shape` (right-aligned, size-1 dimensions broadcast) of
  /// the element at `index` of the broadcast result.
  private func broadcastIndex(_ index: [Int], into shape: [Int]) -> Int {
    let lead = index.count - shape.count
    var flat = 0
    for d in 0..<shape.count { flat = flat * shape[d] + (shape[d] == 1 ? 0 : index[lead + d]) }
    return flat
  }

  private func unravel(_ flat: Int, _ shape: [Int]) -> [Int] {
    var index = [Int](repeating: 0, count: shape.count)
    var rest = flat
    for d in stride(from: shape.count - 1, through: 0, by: -1) {
      index[d] = rest % shape[d]
      rest /= shape[d]
    }
    return index
  }

  public func binary(_ op: BinaryOperation, _ a: Tensor, _ b: Tensor, into out: Tensor) {
    for o in 0..<out.count {
      let index = unravel(o, out.shape)
      let x = read(a)[broadcastIndex(index, into: a.shape)]
      let y = read(b)[broadcastIndex(index, into: b.shape)]
      switch op {
      case .add: write(out)[o] = x + y
      case .subtract: write(out)[o] = x - y
      case .multiply: write(out)[o] = x * y
      }
    }
  }

  public func affine(_ x: Tensor, scale alpha: Float, shift c: Float, into out: Tensor) {
    for i in 0..<x.count { write(out)[i] = Float(Double(alpha) * Double(read(x)[i]) + Double(c)) }
  }

  public func reduce(_ x: Tensor, toShapeOf out: Tensor) {
    var sums = [Double](repeating: 0, count: out.count)
    for i in 0..<x.count {
      sums[broadcastIndex(unravel(i, x.shape), into: out.shape)] += Double(read(x)[i])
    }
    store(sums, out)
  }

  public func sum(_ x: Tensor) -> Float {
    var total = 0.0
    for i in 0..<x.count { total += Double(read(x)[i]) }
    return Float(total)
  }

  public func relu(_ x: Tensor, into out: Tensor) {
    for i in 0..<x.count { write(out)[i] = max(read(x)[i], 0) }
  }

  public func reluBackward(output: Tensor, gradient g: Tensor, into dx: Tensor) {
    for i in 0..<g.count { write(dx)[i] = read(output)[i] > 0 ? read(g)[i] : 0 }
  }

  private func sigmoid(_ z: Double) -> Double { 1 / (1 + exp(-z)) }

  public func sigmoid(_ x: Tensor, into out: Tensor) {
    for i in 0..<x.count { write(out)[i] = Float(sigmoid(Double(read(x)[i]))) }
  }

  public func sigmoidBackward(output: Tensor, gradient g: Tensor, into dx: Tensor) {
    for i in 0..<g.count {
      let y = Double(read(output)[i])
      write(dx)[i] = Float(Double(read(g)[i]) * y * (1 - y))
    }
  }

  public func planeMeans(_ x: Tensor, centres: Tensor?, planes: Int, plane: Int, into means: Tensor)
  {
    for q in 0..<planes {
      let centre = centres.map { Double(read($0)[q % $0.count]) } ?? 0
      var total = 0.0
      for i in 0..<plane { total += Double(read(x)[q * plane + i]) - centre }
      write(means)[q] = Float(total / Double(plane))
    }
  }

  public func spreadPlanes(
    _ values: Tensor, scale: Float, planes: Int, plane: Int, into out: Tensor
  ) {
    for q in 0..<planes {
      for i in 0..<plane {
        write(out)[q * plane + i] = Float(Double(read(values)[q]) * Double(scale))
      }
    }
  }

  // MARK: Linear algebra, convolution, pooling

  public func matrixMultiply(
    _ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
    m: Int, n: Int, k: Int, beta: Float, into c: Tensor
  ) {
    let (pa, pb, pc) = (read(a), read(b), write(c))
    for i in 0..<m {
      for j in 0..<n {
        var total = beta == 0 ? 0 : Double(beta) * Double(pc[i * n + j])
        for p in 0..<k {
          let x = transposeA ? pa[p * m + i] : pa[i * k + p]
          let y = transposeB ? pb[j * k + p] : pb[p * n + j]
          total += Double(x) * Double(y)
        }
        pc[i * n + j] = Float(total)
      }
    }
  }

  /// Calls `body(inputIndex, weightIndex, outputIndex)` for every tap of a convolution that
  /// falls inside the input (the padding contributes zeros).
  private func forEachTap(_ g: ConvGeometry, _ body: (Int, Int, Int) -> Void) {
    let outPerGroup = g.outChannels / g.groups
    let inPerGroup = g.inChannelsPerGroup
    for n in 0..<g.batch {
      for oc in 0..<g.outChannels {
        let group = oc / outPerGroup
        for oy in 0..<g.outHeight {
          for ox in 0..<g.outWidth {
            let o = ((n * g.outChannels + oc) * g.outHeight + oy) * g.outWidth + ox
            for ic in 0..<inPerGroup {
              let channel = group * inPerGroup + ic
              for ky in 0..<g.kernelHeight {
                let iy = oy * g.stride - g.padding + ky * g.dilation
                guard iy >= 0, iy < g.height else { continue }
                for kx in 0..<g.kernelWidth {
                  let ix = ox * g.stride - g.padding + kx * g.dilation
                  guard ix >= 0, ix < g.width else { continue }
                  let i = ((n * g.inChannels + channel) * g.height + iy) * g.width + ix
                  let w = ((oc * inPerGroup + ic) * g.kernelHeight + ky) * g.kernelWidth + kx
                  body(i, w, o)
                }
              }
            }
          }
        }
      }
    }
  }

  public func convolutionForward(
    _ g: ConvGeometry, input: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor
  ) {
    var sums = [Double](repeating: 0, count: out.count)
    let (x, w) = (read(input), read(weight))
    forEachTap(g) { i, k, o in sums[o] += Double(x[i]) * Double(w[k]) }
    if let bias {
      let plane = g.outHeight * g.outWidth
      for o in 0..<sums.count { sums[o] += Double(read(bias)[(o / plane) % g.outChannels]) }
    }
    store(sums, out)
  }

  public func convolutionAccumulatesInputGradient(_ g: ConvGeometry) -> Bool { true }

  public func convolutionBackward(
    _ g: ConvGeometry, input: Tensor?, weight: Tensor?, outputGradient dy: Tensor,
    inputGradient dx: Tensor?, accumulatingInputGradient: Bool, weightGradient dw: Tensor?,
    biasGradient db: Tensor?
  ) {
    let gy = read(dy)
    if let dx, let weight {
      var sums =
        accumulatingInputGradient
        ? (0..<dx.count).map { Double(read(dx)[$0]) } : [Double](repeating: 0, count: dx.count)
      let w = read(weight)
      forEachTap(g) { i, k, o in sums[i] += Double(gy[o]) * Double(w[k]) }
      store(sums, dx)
    }
    if let dw, let input {
      var sums = [Double](repeating: 0, count: dw.count)
      let x = read(input)
      forEachTap(g) { i, k, o in sums[k] += Double(gy[o]) * Double(x[i]) }
      store(sums, dw)
    }
    if let db {
      var sums = [Double](repeating: 0, count: db.count)
      let plane = g.outHeight * g.outWidth
      for o in 0..<dy.count { sums[(o / plane) % g.outChannels] += Double(gy[o]) }
      store(sums, db)
    }
  }

  /// Calls `body(outputIndex, inputIndex or nil for padding, plane)` for every window tap.
  private func forEachWindowTap(
    planes: Int, _ g: PoolGeometry, _ body: (Int, Int?, Int) -> Void
  ) {
    for q in 0..<planes {
      for oy in 0..<g.outputHeight {
        for ox in 0..<g.outputWidth {
          let o = (q * g.outputHeight + oy) * g.outputWidth + ox
          for ky in 0..<g.kernel {
            for kx in 0..<g.kernel {
              let (iy, ix) = (oy * g.stride - g.padding + ky, ox * g.stride - g.padding + kx)
              let inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width
              body(o, inside ? iy * g.width + ix : nil, q)
            }
          }
        }
      }
    }
  }

  // Indices hold each window's argmax as a position in its input plane (exact in Float).
  public func maxPoolForward(
    _ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor, indices: Tensor
  ) {
    var best = [Float](repeating: -.infinity, count: out.count)
    var argmax = [Int](repeating: -1, count: out.count)
    let inPlane = geometry.height * geometry.width
    forEachWindowTap(planes: planes, geometry) { o, i, q in
      guard let i else { return }
      let v = read(x)[q * inPlane + i]
      if argmax[o] < 0 || v > best[o] { (best[o], argmax[o]) = (v, i) }
    }
    for o in 0..<out.count {
      write(out)[o] = best[o]
      write(indices)[o] = Float(argmax[o])
    }
  }

  public func maxPoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor) {
    maxPoolForward(
      x, planes: planes, geometry: geometry, into: out, indices: Tensor.zeros(out.shape))
  }

  public func maxPoolBackward(
    _ dy: Tensor, indices: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor
  ) {
    let inPlane = geometry.height * geometry.width
    let outPlane = geometry.outputHeight * geometry.outputWidth
    var sums = [Double](repeating: 0, count: dx.count)
    for o in 0..<dy.count {
      sums[(o / outPlane) * inPlane + Int(read(indices)[o])] += Double(read(dy)[o])
    }
    store(sums, dx)
  }

  public func averagePoolForward(_ x: Tensor, planes: Int, geometry: PoolGeometry, into out: Tensor)
  {
    var sums = [Double](repeating: 0, count: out.count)
    let inPlane = geometry.height * geometry.width
    forEachWindowTap(planes: planes, geometry) { o, i, q in
      if let i { sums[o] += Double(read(x)[q * inPlane + i]) }
    }
    let window = Double(geometry.kernel * geometry.kernel)
    store(sums.map { $0 / window }, out)
  }

  public func averagePoolBackward(
    _ dy: Tensor, planes: Int, geometry: PoolGeometry, into dx: Tensor
  ) {
    var sums = [Double](repeating: 0, count: dx.count)
    let inPlane = geometry.height * geometry.width
    let window = Double(geometry.kernel * geometry.kernel)
    forEachWindowTap(planes: planes, geometry) { o, i, q in
      if let i { sums[q * inPlane + i] += Double(read(dy)[o]) / window }
    }
    store(sums, dx)
  }

  // MARK: Batch normalisation

  public func batchNormTrainingStatistics(
    _ x: Tensor, epsilon: Float, momentum: Float, runningMean: Tensor?, runningVariance: Tensor?,
    replicas: (any BatchNormReplicaReducer)?, mean: Tensor, invStd: Tensor,
    centredPlaneMeans: Tensor?
  ) {
    let (n, c, plane) = dims(x)
    var m = Double(n * plane)
    let p = read(x)
    var (means, variances) = ([Double](repeating: 0, count: c), [Double](repeating: 0, count: c))
    for ch in 0..<c {
      var total = 0.0
      for b in 0..<n {
        for i in 0..<plane { total += Double(p[(b * c + ch) * plane + i]) }
      }
      let mu = total / m
      if let centredPlaneMeans {
        for b in 0..<n {
          var planeTotal = 0.0
          for i in 0..<plane {
            planeTotal += Double(p[(b * c + ch) * plane + i]) - Double(Float(mu))
          }
          write(centredPlaneMeans)[b * c + ch] = Float(planeTotal / Double(plane))
        }
      }
      var squares = 0.0
      for b in 0..<n {
        for i in 0..<plane {
          let d = Double(p[(b * c + ch) * plane + i]) - mu
          squares += d * d
        }
      }
      (means[ch], variances[ch]) = (mu, squares / m)
    }
    if let replicas {
      let whole = replicas.combine(
        count: n * plane, mean: means.map { Float($0) }, variance: variances.map { Float($0) })
      m = Double(whole.count)
      (means, variances) = (whole.mean.map { Double($0) }, whole.variance.map { Double($0) })
    }
    for ch in 0..<c {
      let (mu, variance) = (means[ch], variances[ch])
      write(mean)[ch] = Float(mu)
      write(invStd)[ch] = Float(1 / (variance + Double(epsilon)).squareRoot())
      if let runningMean, let runningVariance {
        let k = Double(momentum)
        write(runningMean)[ch] = Float((1 - k) * Double(read(runningMean)[ch]) + k * mu)
        write(runningVariance)[ch] = Float(
          (1 - k) * Double(read(runningVariance)[ch]) + k * variance * m / (m - 1))
      }
    }
  }

  public func batchNormEvaluationStatistics(
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, mean: Tensor, invStd: Tensor
  ) -> Int? {
    for ch in 0..<mean.count {
      let v = Double(read(runningVariance)[ch]) + Double(epsilon)
      guard v > 0 else { return ch }
      write(mean)[ch] = read(runningMean)[ch]
      write(invStd)[ch] = Float(1 / v.squareRoot())
    }
    return nil
  }

  public func batchNormFoldedIntoConvolution(
    weight: Tensor, bias: Tensor?, batchNormWeight: Tensor, batchNormBias: Tensor,
    runningMean: Tensor, runningVariance: Tensor, epsilon: Float, foldedWeight: Tensor,
    foldedBias: Tensor
  ) -> Int? {
    let channels = foldedBias.count
    let perChannel = weight.count / channels
    for ch in 0..<channels {
      let v = Double(read(runningVariance)[ch]) + Double(epsilon)
      guard v > 0 else { return ch }
      let scale = Double(read(batchNormWeight)[ch]) / v.squareRoot()
      let shift = Double(read(batchNormBias)[ch]) - Double(read(runningMean)[ch]) * scale
      let b = bias.map { Double(read($0)[ch]) } ?? 0
      write(foldedBias)[ch] = Float(b * scale + shift)
      for k in ch * perChannel..<(ch + 1) * perChannel {
        write(foldedWeight)[k] = Float(Double(read(weight)[k]) * scale)
      }
    }
    return nil
  }

  /// `weight[c]` and `bias[c]`, 1 and 0 where absent.
  private func affineParameters(_ weight: Tensor?, _ bias: Tensor?, _ ch: Int) -> (Double, Double) {
    (weight.map { Double(read($0)[ch]) } ?? 1, bias.map { Double(read($0)[ch]) } ?? 0)
  }

  public func batchNormNormalize(
    _ x: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor?, bias: Tensor?, relu: Bool,
    residual: Tensor?, into out: Tensor
  ) {
    let (n, c, plane) = dims(x)
    for b in 0..<n {
      for ch in 0..<c {
        let (w, bb) = affineParameters(weight, bias, ch)
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          var y = (Double(read(x)[j]) - Double(read(mean)[ch])) * Double(read(invStd)[ch]) * w + bb
          if let residual { y += Double(read(residual)[j]) }
          write(out)[j] = Float(relu ? max(y, 0) : y)
        }
      }
    }
  }

  public func batchNormBackward(
    _ x: Tensor, gradient g: Tensor, training: Bool, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, relu: Bool, replicas: (any BatchNormReplicaReducer)?,
    inputGradient dx: Tensor?, weightGradient dw: Tensor?, biasGradient db: Tensor?
  ) {
    let (n, c, plane) = dims(x)
    var m = Double(n * plane)
    // The sums over the whole data-parallel batch, when replicas share it.
    var totals: [Float]? = nil
    if training, let replicas {
      var (dys, dyXhats) = ([Float](), [Float]())
      for ch in 0..<c {
        let (w, bb) = affineParameters(weight, bias, ch)
        let (mu, inv) = (Double(read(mean)[ch]), Double(read(invStd)[ch]))
        var (sumDy, sumDyXhat) = (0.0, 0.0)
        for b in 0..<n {
          for i in 0..<plane {
            let j = (b * c + ch) * plane + i
            let xhat = (Double(read(x)[j]) - mu) * inv
            let dy = !relu || xhat * w + bb > 0 ? Double(read(g)[j]) : 0
            sumDy += dy
            sumDyXhat += dy * xhat
          }
        }
        dys.append(Float(sumDy))
        dyXhats.append(Float(sumDyXhat))
      }
      let whole = replicas.sum(dys + dyXhats + [Float(n * plane)])
      totals = whole
      m = Double(whole[2 * c])
    }
    for ch in 0..<c {
      let (w, bb) = affineParameters(weight, bias, ch)
      let (mu, inv) = (Double(read(mean)[ch]), Double(read(invStd)[ch]))
      func at(_ b: Int, _ i: Int) -> (xhat: Double, dy: Double, j: Int) {
        let j = (b * c + ch) * plane + i
        let xhat = (Double(read(x)[j]) - mu) * inv
        let open = !relu || xhat * w + bb > 0
        return (xhat, open ? Double(read(g)[j]) : 0, j)
      }
      var (sumDy, sumDyXhat) = (0.0, 0.0)
      for b in 0..<n {
        for i in 0..<plane {
          let v = at(b, i)
          sumDy += v.dy
          sumDyXhat += v.dy * v.xhat
        }
      }
      if let db { write(db)[ch] = Float(sumDy) }
      if let dw { write(dw)[ch] = Float(sumDyXhat) }
      guard let dx else { continue }
      for b in 0..<n {
        for i in 0..<plane {
          let v = at(b, i)
          let (allDy, allDyXhat) =
            totals.map { (Double($0[ch]), Double($0[c + ch])) } ?? (sumDy, sumDyXhat)
          let d = training ? (v.dy - allDy / m - v.xhat * allDyXhat / m) : v.dy
          write(dx)[v.j] = Float(w * inv * d)
        }
      }
    }
  }

  public func batchNormAddReLUBackward(
    _ x: Tensor, output: Tensor, gradient g: Tensor, mean: Tensor, invStd: Tensor,
    weight: Tensor?, bias: Tensor?, gatedGradient dz: Tensor, inputGradient dx: Tensor?,
    weightGradient dw: Tensor?, biasGradient db: Tensor?
  ) {
    reluBackward(output: output, gradient: g, into: dz)
    batchNormBackward(
      x, gradient: dz, training: true, mean: mean, invStd: invStd, weight: weight, bias: bias,
      relu: false, replicas: nil, inputGradient: dx, weightGradient: dw, biasGradient: db)
  }

  // MARK: The ACON family

  /// The gate `h(u)` and its derivative.
  private func gate(_ u: Double, _ kind: ACONGate) -> (h: Double, dh: Double) {
    switch kind {
    case .sigmoid:
      let s = sigmoid(u)
      return (s, s * (1 - s))
    case .hardSigmoid:
      return (min(max(u / 6 + 0.5, 0), 1), u > -3 && u < 3 ? 1.0 / 6 : 0)
    }
  }

  private func betaIndex(_ layout: ACONKernel.BetaLayout, _ b: Int, _ ch: Int, _ i: Int) -> Int {
    b * layout.sampleStride + ch * layout.channelStride + i * layout.elementStride
  }

  /// ACON-C at one element: `y = d z h(beta d z) + p2 z` with its partial derivatives.
  private func acon(_ z: Double, d: Double, p2: Double, beta: Double, _ kind: ACONGate)
    -> (y: Double, dz: Double, dd: Double, dbeta: Double)
  {
    let u = beta * d * z
    let (h, dh) = gate(u, kind)
    // dy/dz = d (h + u h'(u)) + p2; dy/dd = z (h + u h'(u)); dy/dbeta = (d z)^2 h'(u).
    let t = h + u * dh
    return (d * z * h + p2 * z, d * t + p2, z * t, d * z * d * z * dh)
  }

  /// Runs ACON-C over `z(j, channel)` (the input, or a batch norm's output) and collects
  /// the gradients; returns per-element dy/dz times g.
  private func aconPass(
    _ x: Tensor, z: (Int, Int) -> Double, gradient g: Tensor?, p1: Tensor, p2: Tensor,
    beta: Tensor, layout: ACONKernel.BetaLayout, gate kind: ACONGate, out: Tensor?,
    dp1: Tensor?, dp2: Tensor?, dbeta: Tensor?
  ) -> [Double] {
    let (n, c, plane) = dims(x)
    var dzs = [Double](repeating: 0, count: g == nil ? 0 : x.count)
    var (s1, s2) = ([Double](repeating: 0, count: c), [Double](repeating: 0, count: c))
    var sb = [Double](repeating: 0, count: beta.count)
    for b in 0..<n {
      for ch in 0..<c {
        let (a1, a2) = (Double(read(p1)[ch]), Double(read(p2)[ch]))
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          let k = betaIndex(layout, b, ch, i)
          let zj = z(j, ch)
          let r = acon(zj, d: a1 - a2, p2: a2, beta: Double(read(beta)[k]), kind)
          if let out { write(out)[j] = Float(r.y) }
          guard let g else { continue }
          let gj = Double(read(g)[j])
          dzs[j] = gj * r.dz
          // y depends on p1 through d and on p2 through d (negatively) and the p2 z term.
          s1[ch] += gj * r.dd
          s2[ch] += gj * (zj - r.dd)
          sb[k] += gj * r.dbeta
        }
      }
    }
    if let dp1 { store(s1, dp1) }
    if let dp2 { store(s2, dp2) }
    if let dbeta { store(sb, dbeta) }
    return dzs
  }

  public func aconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout,
    gate: ACONGate, into out: Tensor
  ) {
    _ = aconPass(
      x, z: { j, _ in Double(self.read(x)[j]) }, gradient: nil, p1: p1, p2: p2, beta: beta,
      layout: layout, gate: gate, out: out, dp1: nil, dp2: nil, dbeta: nil)
  }

  public func aconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor,
    p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let dzs = aconPass(
      x, z: { j, _ in Double(self.read(x)[j]) }, gradient: g, p1: p1, p2: p2, beta: beta,
      layout: layout, gate: gate, out: nil, dp1: dp1, dp2: dp2, dbeta: dbeta)
    store(dzs, dx)
  }

  /// Yes, through the protocol's default methods (the layer, then the pool, through a
  /// temporary): the fused op's bookkeeping is then checked against the CPU backend's kernels.
  public func fusesMaxPoolAfterBatchNormACON(_ x: Tensor, pool: PoolGeometry) -> Bool { true }

  public func aconAfterBatchNormForward(
    _ x: Tensor, scale: Tensor, shift: Tensor, p1: Tensor, p2: Tensor, beta: Tensor,
    layout: ACONKernel.BetaLayout, gate: ACONGate, into out: Tensor
  ) {
    let z = { (j: Int, ch: Int) in
      Double(self.read(scale)[ch]) * Double(self.read(x)[j]) + Double(self.read(shift)[ch])
    }
    _ = aconPass(
      x, z: z, gradient: nil, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate, out: out,
      dp1: nil, dp2: nil, dbeta: nil)
  }

  public func aconAfterBatchNormBackward(
    _ x: Tensor, gradient g: Tensor, scale: Tensor, shift: Tensor, mean: Tensor, p1: Tensor,
    p2: Tensor, beta: Tensor, layout: ACONKernel.BetaLayout, gate: ACONGate, dz: Tensor,
    normSums: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor, betaGradient dbeta: Tensor
  ) {
    let z = { (j: Int, ch: Int) in
      Double(self.read(scale)[ch]) * Double(self.read(x)[j]) + Double(self.read(shift)[ch])
    }
    let dzs = aconPass(
      x, z: z, gradient: g, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate, out: nil,
      dp1: dp1, dp2: dp2, dbeta: dbeta)
    store(dzs, dz)
    let (n, c, plane) = dims(x)
    var sums = [Double](repeating: 0, count: 2 * n * c)
    for q in 0..<(n * c) {
      let mu = Double(read(mean)[q % c])
      for i in 0..<plane {
        let j = q * plane + i
        sums[2 * q] += dzs[j]
        sums[2 * q + 1] += dzs[j] * (Double(read(x)[j]) - mu)
      }
    }
    store(sums, normSums)
  }

  public func batchNormAffine(
    mean: Tensor, invStd: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor
  ) {
    for ch in 0..<mean.count {
      let s = Double(read(invStd)[ch]) * Double(read(weight)[ch])
      write(scale)[ch] = Float(s)
      write(shift)[ch] = Float(Double(read(bias)[ch]) - Double(read(mean)[ch]) * s)
    }
  }

  public func batchNormPooledMeans(
    centredPlaneMeans: Tensor, scale: Tensor, bias: Tensor, into means: Tensor
  ) {
    let c = scale.count
    for q in 0..<means.count {
      write(means)[q] = Float(
        Double(read(bias)[q % c]) + Double(read(scale)[q % c]) * Double(read(centredPlaneMeans)[q]))
    }
  }

  // From the definition: dz plus the meta-ACON constants, then the batch norm's backward over
  // x itself (the sums the CPU backend reuses are not read here).
  public func batchNormAfterACONBackward(
    _ x: Tensor, dz: Tensor, normSums: Tensor, mean: Tensor, invStd: Tensor, weight: Tensor,
    training: Bool, pooledGradient: Tensor?, centredPlaneMeans: Tensor?, inputGradient dx: Tensor?,
    weightGradient dw: Tensor, biasGradient db: Tensor
  ) {
    let (n, c, plane) = dims(x)
    let m = Double(n * plane)
    var total = [Double](repeating: 0, count: x.count)
    for j in 0..<x.count {
      let constant = pooledGradient.map { Double(read($0)[j / plane]) / Double(plane) } ?? 0
      total[j] = Double(read(dz)[j]) + constant
    }
    for ch in 0..<c {
      let (mu, inv, w) = (
        Double(read(mean)[ch]), Double(read(invStd)[ch]), Double(read(weight)[ch])
      )
      var (sumDz, sumDzXhat) = (0.0, 0.0)
      for b in 0..<n {
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          sumDz += total[j]
          sumDzXhat += total[j] * (Double(read(x)[j]) - mu) * inv
        }
      }
      write(db)[ch] = Float(sumDz)
      write(dw)[ch] = Float(sumDzXhat)
      guard let dx else { continue }
      for b in 0..<n {
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          let xhat = (Double(read(x)[j]) - mu) * inv
          let d = training ? total[j] - sumDz / m - xhat * sumDzXhat / m : total[j]
          write(dx)[j] = Float(w * inv * d)
        }
      }
    }
  }

  public func smoothMaximumForward(_ a: Tensor, _ b: Tensor, into out: Tensor) {
    for i in 0..<a.count {
      let (x, y) = (Double(read(a)[i]), Double(read(b)[i]))
      write(out)[i] = Float((x - y) * sigmoid(x - y) + y)
    }
  }

  public func smoothMaximumBackward(
    _ a: Tensor, _ b: Tensor, gradient g: Tensor, aGradient da: Tensor, bGradient db: Tensor
  ) {
    for i in 0..<a.count {
      let e = Double(read(a)[i]) - Double(read(b)[i])
      let s = sigmoid(e)
      let t = s + e * s * (1 - s)
      let gi = Double(read(g)[i])
      write(da)[i] = Float(gi * t)
      write(db)[i] = Float(gi * (1 - t))
    }
  }

  public func pixelAconForward(
    _ x: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor, gate: ACONGate,
    into out: Tensor
  ) {
    let (n, c, plane) = dims(x)
    for b in 0..<n {
      for ch in 0..<c {
        let (a1, a2) = (Double(read(p1)[ch]), Double(read(p2)[ch]))
        let (w, bb) = (Double(read(weight)[ch]), Double(read(bias)[ch]))
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          let xj = Double(read(x)[j])
          write(out)[j] = Float(acon(xj, d: a1 - a2, p2: a2, beta: sigmoid(w * xj + bb), gate).y)
        }
      }
    }
  }

  public func pixelAconBackward(
    _ x: Tensor, gradient g: Tensor, p1: Tensor, p2: Tensor, weight: Tensor, bias: Tensor,
    gate: ACONGate, inputGradient dx: Tensor, p1Gradient dp1: Tensor, p2Gradient dp2: Tensor,
    weightGradient dw: Tensor, biasGradient db: Tensor
  ) {
    let (n, c, plane) = dims(x)
    var sums = [[Double]](repeating: [Double](repeating: 0, count: c), count: 4)
    for b in 0..<n {
      for ch in 0..<c {
        let (a1, a2) = (Double(read(p1)[ch]), Double(read(p2)[ch]))
        let (w, bb) = (Double(read(weight)[ch]), Double(read(bias)[ch]))
        for i in 0..<plane {
          let j = (b * c + ch) * plane + i
          let (xj, gj) = (Double(read(x)[j]), Double(read(g)[j]))
          let s = sigmoid(w * xj + bb)
          let r = acon(xj, d: a1 - a2, p2: a2, beta: s, gate)
          // beta depends on x too: the generator's path adds to dx.
          let e = gj * r.dbeta * s * (1 - s)
          write(dx)[j] = Float(gj * r.dz + e * w)
          sums[0][ch] += gj * r.dd
          sums[1][ch] += gj * (xj - r.dd)
          sums[2][ch] += e * xj
          sums[3][ch] += e
        }
      }
    }
    for (t, s) in zip([dp1, dp2, dw, db], sums) { store(s, t) }
  }

  public func addPlaneConstants(
    _ values: Tensor, scale: Float, planes: Int, plane: Int, to out: Tensor
  ) {
    for q in 0..<planes {
      for i in 0..<plane {
        let j = q * plane + i
        write(out)[j] = Float(Double(read(out)[j]) + Double(scale) * Double(read(values)[q]))
      }
    }
  }

  // MARK: Loss, dropout, optimizers

  public func crossEntropyForward(
    _ logits: Tensor, labels: [Int], labelSmoothing epsilon: Float, probabilities: Tensor
  ) -> Float {
    let (n, k) = (logits.shape[0], logits.shape[1])
    var total = 0.0
    for i in 0..<n {
      let row = (0..<k).map { Double(read(logits)[i * k + $0]) }
      let top = row.max()!
      let logZ = log(row.reduce(0) { $0 + exp($1 - top) }) + top
      for j in 0..<k { write(probabilities)[i * k + j] = Float(exp(row[j] - logZ)) }
      // Target: 1 - epsilon on the label, epsilon / K on every class.
      for j in 0..<k {
        let target = Double(epsilon) / Double(k) + (j == labels[i] ? 1 - Double(epsilon) : 0)
        total -= target * (row[j] - logZ)
      }
    }
    return Float(total / Double(n))
  }

  public func crossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing epsilon: Float, scale: Float,
    into dx: Tensor
  ) {
    let (n, k) = (probabilities.shape[0], probabilities.shape[1])
    for i in 0..<n {
      for j in 0..<k {
        let target = Double(epsilon) / Double(k) + (j == labels[i] ? 1 - Double(epsilon) : 0)
        write(dx)[i * k + j] = Float(
          (Double(read(probabilities)[i * k + j]) - target) * Double(scale))
      }
    }
  }

  public func dropoutMask(count: Int, probability: Float, seed: UInt64) -> DropoutMask {
    let mask = DropoutMask(count: count)
    for w in 0..<mask.words { mask.bits[w] = 0 }
    for i in 0..<count {
      // SplitMix64 of (seed, i): a uniform draw in [0, 1) per element.
      var z = seed &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      z ^= z >> 31
      if Double(z >> 11) / Double(1 << 53) >= Double(probability) {
        mask.bits[i / 64] |= 1 << UInt64(i % 64)
      }
    }
    return mask
  }

  public func applyDropout(_ x: Tensor, mask: DropoutMask, scale: Float, into out: Tensor) {
    for i in 0..<x.count {
      let keep = mask.bits[i / 64] & (1 << UInt64(i % 64)) != 0
      write(out)[i] = keep ? read(x)[i] * scale : 0
    }
  }

  public func sgdStep(
    parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, learningRate: Float,
    momentum: Float, weightDecay: Float, firstStep: Bool
  ) {
    for i in 0..<parameter.count {
      let p = Double(read(parameter)[i])
      var step = Double(read(gradient)[i]) + Double(weightDecay) * p
      if let momentumBuffer {
        if !firstStep { step += Double(momentum) * Double(read(momentumBuffer)[i]) }
        write(momentumBuffer)[i] = Float(step)
      }
      write(parameter)[i] = Float(p - Double(learningRate) * step)
    }
  }

  public func adamStep(
    parameter: Tensor, gradient: Tensor, firstMoment: Tensor, secondMoment: Tensor,
    learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float,
    decoupled: Bool, step: Int
  ) {
    let (b1, b2, lr) = (Double(beta1), Double(beta2), Double(learningRate))
    let correction1 = 1 - pow(b1, Double(step))
    let correction2 = 1 - pow(b2, Double(step))
    for i in 0..<parameter.count {
      var p = Double(read(parameter)[i])
      let g = Double(read(gradient)[i]) + (decoupled ? 0 : Double(weightDecay) * p)
      let m = b1 * Double(read(firstMoment)[i]) + (1 - b1) * g
      let v = b2 * Double(read(secondMoment)[i]) + (1 - b2) * g * g
      write(firstMoment)[i] = Float(m)
      write(secondMoment)[i] = Float(v)
      if decoupled { p *= 1 - lr * Double(weightDecay) }
      write(parameter)[i] = Float(
        p - lr / correction1 * m / ((v / correction2).squareRoot() + Double(epsilon)))
    }
  }
}
