import ACONKernels
import Testing

/// ``LongInnerProduct`` against a Float64 product: results of every edge-block shape (rows and
/// columns that are not multiples of four), inner dimensions within one chunk, at a chunk's end
/// and across chunks with a partial last vector, padded rows, and added to what `c` holds.
@Suite("Small products over a long inner dimension")
struct LongInnerProductTests {
  @Test(arguments: [
    (1, 1, 256), (3, 5, 300), (4, 4, 1024), (24, 27, 2100), (8, 147, 1041), (64, 9, 784),
    (7, 2, 3000),
  ])
  func matchesFloat64(_ shape: (Int, Int, Int)) {
    let (m, n, k) = shape
    var rng = Lcg(state: UInt64(m * 1000 + n * 10 + k))
    let (lda, ldb, ldc) = (k + 3, k + 5, n + 2)
    let a = rng.array(m * lda)
    let b = rng.array(n * ldb)
    let before = rng.array(m * ldc)
    for accumulating in [false, true] {
      var c = before
      LongInnerProduct.multiply(
        m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: ldc,
        accumulating: accumulating)
      var worst = 0.0
      for i in 0..<m {
        for j in 0..<ldc {
          var want = Double(before[i * ldc + j])
          if j < n {
            var sum = 0.0
            for p in 0..<k { sum += Double(a[i * lda + p]) * Double(b[j * ldb + p]) }
            want = accumulating ? want + sum : sum
          }
          // Relative to the sum's scale: k terms of magnitude up to 1.
          worst = max(worst, abs(Double(c[i * ldc + j]) - want) / (1 + Double(k).squareRoot()))
        }
      }
      #expect(worst < 1e-5, "\(m) x \(n) over \(k), accumulating \(accumulating): \(worst)")
    }
  }

  @Test func appliesToSixteenLanesOnly() {
    #expect(LongInnerProduct.applies(m: 24, n: 27, k: 12544) == (WideFloat.scalarCount == 16))
    #expect(!LongInnerProduct.applies(m: 24, n: 27, k: 100))
    #expect(!LongInnerProduct.applies(m: 256, n: 256, k: 12544))
  }
}
