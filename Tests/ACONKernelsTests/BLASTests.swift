import ACONKernels
import Testing

/// ``BLAS/sgemm`` shares large products between the workers by panels of columns or rows;
/// each panel is the same sum over the inner dimension, so a shared product must have exactly
/// the bits of the serial one, for every transpose, leading dimension and beta.
@Suite("Matrix products")
struct BLASTests {
  struct Case {
    var m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, beta: Float
  }

  func run(_ c: Case, serial: Bool, seed: UInt64) -> [Float] {
    var rng = Lcg(state: seed)
    // Leading dimensions wider than the matrices, so an offset mistake reads the padding.
    let (aRows, aColumns) = c.transposeA ? (c.k, c.m) : (c.m, c.k)
    let (bRows, bColumns) = c.transposeB ? (c.n, c.k) : (c.k, c.n)
    let (lda, ldb, ldc) = (aColumns + 3, bColumns + 5, c.n + 7)
    let a = rng.array(aRows * lda)
    let b = rng.array(bRows * ldb)
    var out = rng.array(c.m * ldc)
    BLAS.sgemm(
      transposeA: c.transposeA, transposeB: c.transposeB, m: c.m, n: c.n, k: c.k, alpha: 0.5,
      a: a, lda: lda, b: b, ldb: ldb, beta: c.beta, c: &out, ldc: ldc, serial: serial)
    return out
  }

  @Test func sharedProductsEqualSerialOnes() {
    let cases = [
      Case(m: 64, n: 300, k: 70, transposeA: false, transposeB: false, beta: 0),
      Case(m: 300, n: 40, k: 90, transposeA: true, transposeB: false, beta: 1),
      Case(m: 97, n: 131, k: 65, transposeA: false, transposeB: true, beta: 0.25),
      Case(m: 150, n: 149, k: 33, transposeA: true, transposeB: true, beta: 0),
    ]
    for (i, c) in cases.enumerated() {
      #expect(c.m * c.n * c.k >= BLAS.minimumParallelWork, "case \(i) too small to be shared")
      let serial = run(c, serial: true, seed: UInt64(40 + i))
      let shared = run(c, serial: false, seed: UInt64(40 + i))
      #expect(serial == shared, "case \(i): \(c)")
      #expect(serial.allSatisfy { $0.isFinite })
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
