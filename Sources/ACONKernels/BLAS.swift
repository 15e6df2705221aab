import CBLAS

/// Matrix products through OpenBLAS, in row-major order.
public enum BLAS {
  /// `C = alpha * op(A) * op(B) + beta * C`, row-major; `op(A)` is `m x k`, `op(B)` is `k x n`.
  public static func sgemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    if m == 0 || n == 0 { return }
    if k == 0 {
      // BLAS leaves C untouched when k = 0 only if beta = 1; make the result explicit.
      if beta == 0 {
        for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
      } else if beta != 1 {
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
      }
      return
    }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
      transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  /// Sets how many threads OpenBLAS uses.
  public static func setThreads(_ count: Int) {
    openblas_set_num_threads(Int32(count))
  }

  /// How many threads OpenBLAS uses.
  public static var threads: Int { Int(openblas_get_num_threads()) }
}
