import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The one parallel-for of the Swift kernels.
///
/// The machines we target have two cores, so work is cut into at most `Parallel.workers`
/// contiguous chunks; chunks smaller than `minimumChunk` items are not worth a thread hop.
/// Matrix products share these workers (``BLAS``): one called from inside `Parallel.forRanges`
/// must pass `serial: true`, since nesting the loops would oversubscribe the cores.
public enum Parallel {
  /// How many threads the Swift kernels and the matrix products use (defaults to the number of
  /// active processors).
  nonisolated(unsafe) public static var workers: Int = max(
    1, min(ProcessInfo_activeProcessorCount(), 64))

  /// Calls `body` on disjoint ranges that together cover `0..<count`, in parallel when it pays.
  @inlinable
  public static func forRanges(
    _ count: Int, minimumChunk: Int = 4096, _ body: (Range<Int>) -> Void
  ) {
    if count <= 0 { return }
    let chunks = min(workers, max(1, count / max(1, minimumChunk)))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    withoutActuallyEscaping(body) { body in
      DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        let start = count * chunk / chunks
        let end = count * (chunk + 1) / chunks
        body(start..<end)
      }
    }
  }

  /// Calls `body(i)` for every `i` in `0..<count`, spreading indices over the workers.
  /// Use it for coarse items (an image, a channel) whose cost is at least a few microseconds.
  @inlinable
  public static func forEach(_ count: Int, _ body: (Int) -> Void) {
    forRanges(count, minimumChunk: 1) { range in
      for i in range { body(i) }
    }
  }
}

@usableFromInline
func ProcessInfo_activeProcessorCount() -> Int {
  Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
}
