import ACONKernels
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// Float64 reference of ACON-C with a sigmoid or hard-sigmoid gate (the formulas of paper.md
/// section 1, written out independently of the kernels).
private func reference(
  _ x: Double, _ p1: Double, _ p2: Double, _ beta: Double, hard: Bool
) -> (y: Double, dydx: Double, dydp1: Double, dydp2: Double, dydbeta: Double) {
  let d = p1 - p2
  let u = beta * d * x
  let h: Double
  let slope: Double
  if hard {
    h = min(max(u / 6 + 0.5, 0), 1)
    slope = (u > -3 && u < 3) ? 1.0 / 6.0 : 0
  } else {
    h = u >= 0 ? 1 / (1 + exp(-u)) : exp(u) / (1 + exp(u))
    slope = h * (1 - h)
  }
  let t = h + u * slope
  return (d * x * h + p2 * x, d * t + p2, x * t, x - x * t, d * x * d * x * slope)
}

private func random(_ n: Int, _ rng: inout RandomGenerator, scale: Float = 1) -> [Float] {
  (0..<n).map { _ in rng.nextNormal() * scale }
}

@Suite("ACON kernels")
struct ACONKernelTests {
  @Test func fastSigmoidMatchesFloat64() {
    // Every 1/64 on [-87, 87] (where sigma is a normal Float), plus the extremes.
    var worst = 0.0
    var u = -87.0
    while u <= 87.0 {
      let v = Float8((0..<8).map { Float(u) + Float($0) / 512 })
      let s = fastSigmoid(v)
      for l in 0..<8 {
        let exact = 1 / (1 + exp(-Double(v[l])))
        worst = max(worst, abs(Double(s[l]) - exact) / exact)
      }
      u += 1.0 / 64
    }
    #expect(worst < 1e-6, "worst relative error \(worst)")
    let extremes = Float8(-1e4, -1e3, -200, -88.5, 88.5, 200, 1e3, 1e4)
    let s = fastSigmoid(extremes)
    for l in 0..<8 {
      #expect(s[l].isFinite && s[l] >= 0 && s[l] <= 1)
      let exact = 1 / (1 + exp(-Double(extremes[l])))
      // Below -87 the true value is subnormal or zero: absolute error is what is left.
      #expect(abs(Double(s[l]) - exact) < 2e-38)
    }
    let special = fastSigmoid(
      Float8(0, -0.0, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1, -1, 20, -20))
    #expect(special[0] == 0.5 && special[1] == 0.5 && special[2] == 1 && special[3] >= 0)
  }

  /// The 16-lane sigmoid (the wide plane loops on AVX-512) is the 8-lane one, bit for bit, so
  /// the vector width changes only the order of the plane sums, never an activation.
  @Test func wideSigmoidMatchesEightLanes() {
    var u: Float = -100
    while u <= 100 {
      let wide = SIMD16<Float>((0..<16).map { u + Float($0) / 37 })
      let s = fastSigmoid(wide)
      let low = fastSigmoid(wide.lowHalf)
      let high = fastSigmoid(wide.highHalf)
      for l in 0..<8 {
        #expect(s[l].bitPattern == low[l].bitPattern)
        #expect(s[l + 8].bitPattern == high[l].bitPattern)
      }
      u += 0.37
    }
  }

  /// The width of the wide loops follows the instruction set the build chose (one decision in
  /// Package.swift): 16 floats with AVX-512, 8 otherwise.
  @Test func vectorWidthMatchesInstructionSet() {
    #expect(InstructionSet.vectorLanes == (InstructionSet.compiled == .avx512 ? 16 : 8))
  }

  /// Runs the kernels on a `[n, c, plane]` input with beta laid out per `layout`.
  private func check(
    n: Int, c: Int, plane: Int, betaCount: Int, layout: ACONKernel.BetaLayout, hard: Bool,
    seed: UInt64, betaScale: Float = 1
  ) {
    var rng = RandomGenerator(seed: seed)
    let count = n * c * plane
    let x = random(count, &rng, scale: 2)
    let g = random(count, &rng)
    let p1 = random(c, &rng)
    let p2 = random(c, &rng)
    let beta = random(betaCount, &rng, scale: betaScale)
    let geo = ACONKernel.Geometry(batch: n, channels: c, plane: plane)
    let gate: ACONKernel.Gate = hard ? .hardSigmoid : .sigmoid
    var y = [Float](repeating: .nan, count: count)
    var dx = [Float](repeating: .nan, count: count)
    var sums = [Float](repeating: .nan, count: 3 * n * c)
    var dbetaElements = [Float](repeating: .nan, count: count)
    var dp1 = [Float](repeating: .nan, count: c)
    var dp2 = [Float](repeating: .nan, count: c)
    var dbeta = [Float](repeating: .nan, count: betaCount)
    let perElement = layout.elementStride != 0 && plane > 1
    ACONKernel.forward(
      x, &y, geometry: geo, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate)
    dbetaElements.withUnsafeMutableBufferPointer { dbe in
      ACONKernel.backward(
        x, g, &dx, geometry: geo, p1: p1, p2: p2, beta: beta, layout: layout, gate: gate,
        planeSums: &sums, dbetaElements: perElement ? dbe.baseAddress! : nil)
    }
    dbeta.withUnsafeMutableBufferPointer { db in
      ACONKernel.reduceParameterGradients(
        planeSums: sums, geometry: geo, dp1: &dp1, dp2: &dp2,
        dbeta: perElement ? nil : db.baseAddress!, dbetaCount: betaCount, layout: layout)
    }
    var rp1 = [Double](repeating: 0, count: c)
    var rp2 = [Double](repeating: 0, count: c)
    var rb = [Double](repeating: 0, count: betaCount)
    var worstY = 0.0
    var worstDx = 0.0
    for s in 0..<n {
      for ch in 0..<c {
        for i in 0..<plane {
          let k = (s * c + ch) * plane + i
          let bi = s * layout.sampleStride + ch * layout.channelStride + i * layout.elementStride
          let r = reference(
            Double(x[k]), Double(p1[ch]), Double(p2[ch]), Double(beta[bi]), hard: hard)
          worstY = max(worstY, abs(Double(y[k]) - r.y) / (1 + abs(r.y)))
          worstDx = max(worstDx, abs(Double(dx[k]) - Double(g[k]) * r.dydx) / (1 + abs(r.dydx)))
          rp1[ch] += Double(g[k]) * r.dydp1
          rp2[ch] += Double(g[k]) * r.dydp2
          if perElement {
            #expect(
              abs(Double(dbetaElements[k]) - Double(g[k]) * r.dydbeta) < 1e-4 * (1 + abs(r.dydbeta))
            )
          } else {
            rb[bi] += Double(g[k]) * r.dydbeta
          }
        }
      }
    }
    #expect(worstY < 2e-6, "forward error \(worstY)")
    #expect(worstDx < 2e-5, "dx error \(worstDx)")
    let scale = Double(n * plane).squareRoot()
    for ch in 0..<c {
      #expect(abs(Double(dp1[ch]) - rp1[ch]) < 1e-4 * scale * (1 + abs(rp1[ch])), "dp1[\(ch)]")
      #expect(abs(Double(dp2[ch]) - rp2[ch]) < 1e-4 * scale * (1 + abs(rp2[ch])), "dp2[\(ch)]")
    }
    if !perElement {
      for i in 0..<betaCount {
        #expect(abs(Double(dbeta[i]) - rb[i]) < 1e-4 * scale * (1 + abs(rb[i])), "dbeta[\(i)]")
      }
    }
  }

  @Test(arguments: [false, true])
  func perChannelBetaMatchesReference(hard: Bool) {
    // plane 27: three full vectors and a tail of 3; 3 x 5 planes.
    check(n: 3, c: 5, plane: 27, betaCount: 5, layout: .perChannel, hard: hard, seed: 1)
    // plane 1 (an [N, C] input), C = 11: one full vector and a tail per row.
    check(n: 4, c: 11, plane: 1, betaCount: 11, layout: .perChannel, hard: hard, seed: 2)
  }

  @Test func metaLayoutsMatchReference() {
    let (n, c, plane) = (3, 4, 13)
    // channel-wise [N, C, 1, 1]
    check(
      n: n, c: c, plane: plane, betaCount: n * c,
      layout: .init(sampleStride: c, channelStride: 1, elementStride: 0), hard: false, seed: 3)
    // layer-wise [N, 1, 1, 1]
    check(
      n: n, c: c, plane: plane, betaCount: n,
      layout: .init(sampleStride: 1, channelStride: 0, elementStride: 0), hard: false, seed: 4)
    // pixel-wise, x's shape
    check(
      n: n, c: c, plane: plane, betaCount: n * c * plane,
      layout: .init(sampleStride: c * plane, channelStride: plane, elementStride: 1),
      hard: false, seed: 5)
    // rank 2, beta per (n, c) and per n
    check(
      n: 5, c: 9, plane: 1, betaCount: 45,
      layout: .init(sampleStride: 9, channelStride: 1, elementStride: 0), hard: false, seed: 6)
    check(
      n: 5, c: 9, plane: 1, betaCount: 5,
      layout: .init(sampleStride: 1, channelStride: 0, elementStride: 0), hard: true, seed: 7)
  }

  @Test func stableAtExtremes() {
    // |x| up to 1e4 and |beta (p1 - p2)| up to 1e6: finite, and equal to max(p1 x, p2 x).
    let x: [Float] = [-1e4, -300, -1, 0, 1e-30, 1, 300, 1e4]
    let geo = ACONKernel.Geometry(batch: 1, channels: 1, plane: 8)
    for (p1, p2, beta) in [(Float(3), Float(-2), Float(1e5)), (1, 0.5, -1e5), (2, 1, 1e-30)] {
      var y = [Float](repeating: 0, count: 8)
      var dx = [Float](repeating: 0, count: 8)
      var sums = [Float](repeating: 0, count: 3)
      ACONKernel.forward(
        x, &y, geometry: geo, p1: [p1], p2: [p2], beta: [beta], layout: .perChannel)
      ACONKernel.backward(
        x, [Float](repeating: 1, count: 8), &dx, geometry: geo, p1: [p1], p2: [p2],
        beta: [beta], layout: .perChannel, planeSums: &sums, dbetaElements: nil)
      for i in 0..<8 {
        #expect(y[i].isFinite && dx[i].isFinite)
        let r = reference(Double(x[i]), Double(p1), Double(p2), Double(beta), hard: false)
        #expect(abs(Double(y[i]) - r.y) <= 1e-6 * (1 + abs(r.y)))
      }
      #expect(sums.allSatisfy { $0.isFinite })
    }
  }

  @Test func reductionsAreDeterministicAcrossThreadCounts() {
    var rng = RandomGenerator(seed: 9)
    let (n, c, plane) = (8, 16, 3136 / 4)
    let count = n * c * plane
    let x = random(count, &rng)
    let g = random(count, &rng)
    let p1 = random(c, &rng)
    let p2 = random(c, &rng)
    let beta = [Float](repeating: 1, count: c)
    let geo = ACONKernel.Geometry(batch: n, channels: c, plane: plane)
    func run() -> [Float] {
      var dx = [Float](repeating: 0, count: count)
      var sums = [Float](repeating: 0, count: 3 * n * c)
      var dp1 = [Float](repeating: 0, count: c)
      var dp2 = [Float](repeating: 0, count: c)
      var db = [Float](repeating: 0, count: c)
      ACONKernel.backward(
        x, g, &dx, geometry: geo, p1: p1, p2: p2, beta: beta, layout: .perChannel,
        planeSums: &sums, dbetaElements: nil)
      ACONKernel.reduceParameterGradients(
        planeSums: sums, geometry: geo, dp1: &dp1, dp2: &dp2, dbeta: &db, dbetaCount: c,
        layout: .perChannel)
      return dp1 + dp2 + db + [dx.reduce(0, +)]
    }
    // Options are scoped values: other suites running meanwhile keep their own.
    let one = KernelOptions.with(changing: { $0.workers = 1 }, run)
    let two = KernelOptions.with(changing: { $0.workers = 2 }, run)
    #expect(one == two)
  }

  @Test func inPlaceForward() {
    var rng = RandomGenerator(seed: 11)
    var x = random(64, &rng)
    let copy = x
    var y = [Float](repeating: 0, count: 64)
    let geo = ACONKernel.Geometry(batch: 2, channels: 2, plane: 16)
    let p1: [Float] = [1.5, -0.5]
    let p2: [Float] = [0.25, 2]
    let beta: [Float] = [0.7, 3]
    ACONKernel.forward(copy, &y, geometry: geo, p1: p1, p2: p2, beta: beta, layout: .perChannel)
    x.withUnsafeMutableBufferPointer { p in
      ACONKernel.forward(
        p.baseAddress!, p.baseAddress!, geometry: geo, p1: p1, p2: p2, beta: beta,
        layout: .perChannel)
    }
    #expect(x == y)
  }

  @Test func smoothMaximumMatchesReference() {
    var rng = RandomGenerator(seed: 12)
    let n = 37
    let a = random(n, &rng, scale: 3)
    let b = random(n, &rng, scale: 3)
    let g = random(n, &rng)
    var y = [Float](repeating: 0, count: n)
    var da = [Float](repeating: 0, count: n)
    var db = [Float](repeating: 0, count: n)
    ACONKernel.smoothMaximumForward(a, b, &y, count: n)
    ACONKernel.smoothMaximumBackward(a, b, g, da: &da, db: &db, count: n)
    for i in 0..<n {
      // eta_a = a, eta_b = b: ACON-C at x = 1 with p1 = a, p2 = b, beta = 1.
      let r = reference(1, Double(a[i]), Double(b[i]), 1, hard: false)
      #expect(abs(Double(y[i]) - r.y) < 1e-5)
      #expect(abs(Double(da[i]) - Double(g[i]) * r.dydp1) < 1e-5)
      #expect(abs(Double(db[i]) - Double(g[i]) * r.dydp2) < 1e-5)
    }
  }
}
