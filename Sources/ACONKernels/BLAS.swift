import CBLAS

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Matrix products through OpenBLAS, in row-major order.
///
/// OpenBLAS itself runs single-threaded; a product large enough to share is cut into
/// ``Parallel/workers`` column (or row) panels, one single-threaded OpenBLAS call each. One
/// thread pool for the whole engine: OpenBLAS's own threads busy-wait for about 0.1 s after
/// each product they share, and on two cores they took a whole core from the Swift kernels
/// that ran next (a ResNet-50 step was 15% slower with them than with
/// `OPENBLAS_THREAD_TIMEOUT=4`).
///
/// Determinism: the panels follow from the shape and the worker count only, never from timing
/// (a busy pool runs the same panels one after another), so the same inputs give the same bits
/// run to run. A panel's bits may differ from the whole product's in the last place: OpenBLAS
/// blocks and handles edges by core type, so the split itself can change the rounding.
public enum BLAS {
  /// Products of fewer multiply-adds run on the calling thread
  /// (``KernelOptions/minimumParallelMatrixWork``).
  public static var minimumParallelWork: Int { KernelOptions.current.minimumParallelMatrixWork }

  /// Sets OpenBLAS to one thread before the first product.
  private static let singleThreaded: Void = { openblas_set_num_threads(1) }()

  /// `C = alpha * op(A) * op(B) + beta * C`, row-major; `op(A)` is `m x k`, `op(B)` is `k x n`.
  ///
  /// Set `serial` when calling from inside a ``Parallel`` loop: the product then runs on the
  /// calling thread only.
  public static func sgemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, serial: Bool = false
  ) {
    _ = singleThreaded
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
    func product(rows: Range<Int>, columns: Range<Int>) {
      // Row i of op(A) and column j of op(B), wherever the transposes put them.
      let aStart = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
      let bStart = transposeB ? b + columns.lowerBound * ldb : b + columns.lowerBound
      cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
        transposeB ? CblasTrans : CblasNoTrans,
        Int32(rows.count), Int32(columns.count), Int32(k), alpha, aStart, Int32(lda), bStart,
        Int32(ldb), beta, c + rows.lowerBound * ldc + columns.lowerBound, Int32(ldc))
    }
    // Panels of whole 16-float column (or row) groups, the kernels' register blocking.
    let group = 16
    if serial || Parallel.workers <= 1 || m * n * k < minimumParallelWork || max(m, n) < 2 * group {
      product(rows: 0..<m, columns: 0..<n)
      return
    }
    if n >= m {
      Parallel.forRanges((n + group - 1) / group, minimumChunk: 1) { units in
        product(rows: 0..<m, columns: units.lowerBound * group..<min(n, units.upperBound * group))
      }
    } else {
      Parallel.forRanges((m + group - 1) / group, minimumChunk: 1) { units in
        product(rows: units.lowerBound * group..<min(m, units.upperBound * group), columns: 0..<n)
      }
    }
  }
}
