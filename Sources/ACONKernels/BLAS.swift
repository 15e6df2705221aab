import CDNNL
import CPlatform

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Matrix products through oneDNN's `dnnl_sgemm`, in row-major order.
///
/// oneDNN chooses its kernels at run time from the CPU: on AVX-512 machines it runs 16-lane
/// kernels. On the Zen 5 machines (2026-12-02, one thread, the shapes of ResNet-50's and the
/// Fashion-MNIST network's 1x1 layers) it ran 200-220 GFLOP/s where Debian's OpenBLAS 0.3.21,
/// held to its Haswell kernels by `OPENBLAS_CORETYPE=Haswell`, ran 95-110 and BLIS 0.9.0 (no
/// Zen 5 configuration: it falls back to generic C unless forced to `skx`) 100-190.
///
/// oneDNN itself runs single-threaded (its OpenMP team is set to one thread on each calling
/// thread); a product large enough to share is cut into ``Parallel/workers`` column (or row)
/// panels, one single-threaded call each. One thread pool for the whole engine: a library's
/// own threads busy-wait after each product they share, and on two cores they took a whole
/// core from the Swift kernels that ran next (measured with OpenBLAS: a ResNet-50 step was 15%
/// slower).
///
/// Determinism: the panels follow from the shape and the worker count only, never from timing
/// (a busy pool runs the same panels one after another), so the same inputs give the same bits
/// run to run. A panel's bits may differ from the whole product's in the last place: the
/// library blocks and handles edges by shape and CPU, so the split itself can change the
/// rounding.
public enum BLAS {
  /// Products of fewer multiply-adds run on the calling thread
  /// (``KernelOptions/minimumParallelMatrixWork``).
  public static var minimumParallelWork: Int { KernelOptions.current.minimumParallelMatrixWork }

  /// One product on the calling thread: oneDNN's OpenMP team for this thread is set to one
  /// thread first (the setting is per thread, and the pool's threads start with the process
  /// default, one thread per core).
  @inline(__always)
  private static func singleThreadedProduct(
    _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
  ) {
    omp_set_num_threads(1)
    // oneDNN 2.x's generated sgemm kernels point the stack register into a heap buffer while
    // they run (oneDNN issue 4845, fixed in 3.11.1; Debian 12 ships 2.6.3): a signal handled on
    // this thread meanwhile would write its frame over the heap. The pool's helpers block
    // signals for good (``WorkerPool``); any other thread holds them for the call, and one that
    // arrives meanwhile is handled after it.
    var saved = acon_signal_mask()
    let holds = acon_thread_is_shielded_from_signals() == 0
    if holds { acon_hold_signals(&saved) }
    let status = dnnl_sgemm(
      CChar(UInt8(ascii: transposeA ? "T" : "N")), CChar(UInt8(ascii: transposeB ? "T" : "N")),
      Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
    if holds { acon_release_signals(&saved) }
    precondition(status == dnnl_success, "dnnl_sgemm failed (status \(status.rawValue))")
  }

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
      singleThreadedProduct(
        transposeA, transposeB, rows.count, columns.count, k, alpha, aStart, lda, bStart, ldb,
        beta, c + rows.lowerBound * ldc + columns.lowerBound, ldc)
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
