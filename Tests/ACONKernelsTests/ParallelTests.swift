import ACONKernels
import Dispatch
import Foundation
import Synchronization
import Testing

/// ``Parallel`` runs loops on its own worker threads: every index exactly once, from any number
/// of calling threads at once, nested, and after the helpers have gone to sleep.
@Suite("Parallel loops")
struct ParallelTests {
  /// Counts, per index, how often `body` saw it.
  func visits(_ count: Int, minimumChunk: Int) -> [Int] {
    let seen = UnsafeMutablePointer<Int>.allocate(capacity: max(1, count))
    seen.initialize(repeating: 0, count: max(1, count))
    defer { seen.deallocate() }
    Parallel.forRanges(count, minimumChunk: minimumChunk) { range in
      for i in range { seen[i] += 1 }
    }
    return Array(UnsafeBufferPointer(start: seen, count: count))
  }

  @Test func everyIndexOnce() {
    for (count, chunk) in [(0, 1), (1, 1), (2, 1), (7, 1), (1000, 3), (100_000, 4096), (5, 100)] {
      #expect(visits(count, minimumChunk: chunk) == [Int](repeating: 1, count: count), "\(count)")
    }
  }

  @Test func concurrentCallersAndNesting() {
    let failures = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 6) { caller in
      for round in 0..<300 {
        let count = 64 + (caller * 37 + round) % 200
        // Each outer chunk runs an inner loop (which finds the pool busy and runs serially).
        let total = Atomic<Int>(0)
        Parallel.forRanges(count, minimumChunk: 1) { range in
          for i in range {
            let inner = Atomic<Int>(0)
            Parallel.forRanges(10, minimumChunk: 1) { r in inner.add(r.count, ordering: .relaxed) }
            total.add(i + inner.load(ordering: .relaxed) - 10, ordering: .relaxed)
          }
        }
        if total.load(ordering: .relaxed) != count * (count - 1) / 2 {
          failures.add(1, ordering: .relaxed)
        }
      }
    }
    #expect(failures.load(ordering: .relaxed) == 0)
  }

  @Test func loopsAfterTheHelpersSleep() {
    for _ in 0..<5 {
      usleep(3000)  // well past the helpers' spin time
      #expect(visits(50_000, minimumChunk: 1000) == [Int](repeating: 1, count: 50_000))
    }
  }
}
