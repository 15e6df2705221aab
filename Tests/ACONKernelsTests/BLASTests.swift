import ACONKernels
import Testing

/// ``BLAS/sgemm`` shares large products between the workers by panels of columns or rows.
///
/// The determinism the engine promises (and resume relies on): the same inputs on the same CPU
/// with the same worker count give the same bits, whatever the timing. It does not promise that
/// a panelled product has the bits of the whole product: the library's edge kernels and blocking
/// depend on the shape and the CPU (OpenBLAS's Haswell kernels on Zen 5 rounded a panel's sums
/// differently), so the split itself may change the rounding. So the shared product is checked
/// against itself run again, against the same panels run one after another on a busy pool, and
/// against a Float64 product.
@Suite("Matrix products")
struct BLASTests {
  struct Case {
    var m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, beta: Float
  }

  func run(_ c: Case, serial: Bool, seed: UInt64, insideBusyPool: Bool = false) -> [Float] {
    var rng = Lcg(state: seed)
    // Leading dimensions wider than the matrices, so an offset mistake reads the padding.
    let (aRows, aColumns) = c.transposeA ? (c.k, c.m) : (c.m, c.k)
    let (bRows, bColumns) = c.transposeB ? (c.n, c.k) : (c.k, c.n)
    let (lda, ldb, ldc) = (aColumns + 3, bColumns + 5, c.n + 7)
    let a = rng.array(aRows * lda)
    let b = rng.array(bRows * ldb)
    var out = rng.array(c.m * ldc)
    func product() {
      BLAS.sgemm(
        transposeA: c.transposeA, transposeB: c.transposeB, m: c.m, n: c.n, k: c.k, alpha: 0.5,
        a: a, lda: lda, b: b, ldb: ldb, beta: c.beta, c: &out, ldc: ldc, serial: serial)
    }
    if insideBusyPool {
      // The product starts while a loop holds the pool, so its panels run one after another on
      // this thread: the chunking must not change, and neither may the bits.
      Parallel.forEach(2) { i in if i == 0 { product() } }
    } else {
      product()
    }
    return out
  }

  /// The largest difference between `out` and the same product in Float64 (`c` as `run` made it).
  func worstError(_ c: Case, _ out: [Float], seed: UInt64) -> Double {
    var rng = Lcg(state: seed)
    let (aRows, aColumns) = c.transposeA ? (c.k, c.m) : (c.m, c.k)
    let (bRows, bColumns) = c.transposeB ? (c.n, c.k) : (c.k, c.n)
    let (lda, ldb, ldc) = (aColumns + 3, bColumns + 5, c.n + 7)
    let a = rng.array(aRows * lda)
    let b = rng.array(bRows * ldb)
    let before = rng.array(c.m * ldc)
    var worst = 0.0
    for i in 0..<c.m {
      for j in 0..<ldc {
        var want = Double(before[i * ldc + j])
        if j < c.n {
          var sum = 0.0
          for p in 0..<c.k {
            let x = c.transposeA ? a[p * lda + i] : a[i * lda + p]
            let y = c.transposeB ? b[j * ldb + p] : b[p * ldb + j]
            sum += Double(x) * Double(y)
          }
          want = 0.5 * sum + Double(c.beta) * want
        }
        worst = max(worst, abs(Double(out[i * ldc + j]) - want))
      }
    }
    return worst
  }

  @Test func sharedProductsAreDeterministicAndAccurate() {
    let cases = [
      Case(m: 64, n: 300, k: 70, transposeA: false, transposeB: false, beta: 0),
      Case(m: 300, n: 40, k: 90, transposeA: true, transposeB: false, beta: 1),
      Case(m: 97, n: 131, k: 65, transposeA: false, transposeB: true, beta: 0.25),
      Case(m: 150, n: 149, k: 33, transposeA: true, transposeB: true, beta: 0),
    ]
    for (i, c) in cases.enumerated() {
      #expect(c.m * c.n * c.k >= BLAS.minimumParallelWork, "case \(i) too small to be shared")
      let seed = UInt64(40 + i)
      let shared = run(c, serial: false, seed: seed)
      #expect(shared == run(c, serial: false, seed: seed), "case \(i): run to run, \(c)")
      #expect(
        shared == run(c, serial: false, seed: seed, insideBusyPool: true),
        "case \(i): on a busy pool, \(c)")
      // Panelled or whole, both are the product to within float rounding of a k-term sum.
      let tolerance = 1e-5 * Double(c.k)
      #expect(worstError(c, shared, seed: seed) < tolerance, "case \(i): shared, \(c)")
      let whole = run(c, serial: true, seed: seed)
      #expect(worstError(c, whole, seed: seed) < tolerance, "case \(i): whole, \(c)")
    }
  }

  /// The result against a plain triple loop (and C's padding left alone).
  @Test func matchesNaiveProduct() {
    let c = Case(m: 70, n: 90, k: 50, transposeA: true, transposeB: true, beta: 0.5)
    var rng = Lcg(state: 5)
    let (lda, ldb, ldc) = (c.m + 3, c.k + 5, c.n + 7)
    let a = rng.array(c.k * lda)
    let b = rng.array(c.n * ldb)
    let before = rng.array(c.m * ldc)
    var out = before
    BLAS.sgemm(
      transposeA: true, transposeB: true, m: c.m, n: c.n, k: c.k, alpha: 0.5, a: a, lda: lda,
      b: b, ldb: ldb, beta: c.beta, c: &out, ldc: ldc)
    var worst = 0.0
    for i in 0..<c.m {
      for j in 0..<ldc {
        var want = Double(before[i * ldc + j])
        if j < c.n {
          var sum = 0.0
          for p in 0..<c.k { sum += Double(a[p * lda + i]) * Double(b[j * ldb + p]) }
          want = 0.5 * sum + 0.5 * want
        }
        worst = max(worst, abs(Double(out[i * ldc + j]) - want))
      }
    }
    #expect(worst < 1e-4)
  }
}
