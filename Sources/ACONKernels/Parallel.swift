import CPlatform
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The one parallel-for of the kernels, matrix products included (``BLAS``).
///
/// The machines we target have two cores, so work is cut into at most `Parallel.workers`
/// contiguous chunks; chunks smaller than `minimumChunk` items are not worth a thread hop.
/// Chunks run on ``WorkerPool``'s threads and the calling thread. A loop started while the
/// pool is busy (a loop nested in another, or tests calling from several threads at once) runs
/// the same chunks one after another on its calling thread, so nesting cannot deadlock and the
/// chunking (and any per-chunk sum) never depends on timing; a matrix product called from
/// inside a loop should still pass `serial: true` to skip the attempt.
public enum Parallel {
  /// How many threads the kernels and the matrix products use: ``KernelOptions/workers`` of
  /// the options in force (by default the processors this process may run on).
  public static var workers: Int { max(1, min(KernelOptions.current.workers, 64)) }

  /// The processors this process may run on (its affinity mask), at most 64.
  public static let availableWorkers = max(1, min(availableProcessorCount(), 64))

  /// Calls `body` on disjoint ranges that together cover `0..<count`, in parallel when it pays.
  public static func forRanges(
    _ count: Int, minimumChunk: Int = 4096, _ body: (Range<Int>) -> Void
  ) {
    if count <= 0 { return }
    let chunks = min(workers, max(1, count / max(1, minimumChunk)))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    func run(_ chunk: Int) { body(count * chunk / chunks..<count * (chunk + 1) / chunks) }
    if !WorkerPool.shared.run(chunks: chunks, run) {
      // The same chunks one after another: a kernel that sums per chunk gives the same bits
      // whether or not the pool was free.
      for chunk in 0..<chunks { run(chunk) }
    }
  }

  /// Calls `body(i)` for every `i` in `0..<count`, spreading indices over the workers.
  /// Use it for coarse items (an image, a channel) whose cost is at least a few microseconds.
  public static func forEach(_ count: Int, _ body: (Int) -> Void) {
    forRanges(count, minimumChunk: 1) { range in
      for i in range { body(i) }
    }
  }
}

/// Processors this process may run on (its affinity mask, as `nproc` counts them).
func availableProcessorCount() -> Int {
  Int(acon_available_processors())
}

/// Persistent helper threads (one per processor after the first) that run the chunks of one
/// ``Parallel`` loop at a time beside the calling thread.
///
/// Why not `DispatchQueue.concurrentPerform`: on these 2-vCPU virtual machines handing two
/// chunks to Dispatch cost 10-35 µs per loop (an idle vCPU must be woken), and a training step
/// runs thousands of loops and products. The helpers instead spin for ``spinMicroseconds``
/// after each loop, with the processor's pause hint, before they sleep on a condition variable:
/// during a step the next loop finds them awake (a hand-over is an atomic store), and an idle
/// process stops spinning within a fraction of a millisecond. There are never more busy
/// threads than processors.
///
/// One atomic word holds the loop's generation, chunk count and next unclaimed chunk; a thread
/// claims a chunk by compare-and-swap on it, so a helper that wakes late for a finished loop
/// finds a newer generation and claims nothing.
final class WorkerPool: @unchecked Sendable {
  static let shared = WorkerPool(helpers: Parallel.availableWorkers - 1)

  /// How long an idle helper spins before it sleeps.
  static let spinMicroseconds = 200

  private let helpers: Int
  /// `generation << 40 | chunks << 20 | next chunk`.
  private let state = Atomic<Int>(0)
  private let finished = Atomic<Int>(0)
  private let sleepers = Atomic<Int>(0)
  private let busy = Atomic<Bool>(false)
  private var generation = 0
  /// The running loop's body; written before its generation is published, read only by a
  /// thread that claimed one of its chunks.
  private var body: ((Int) -> Void)?
  private var mutex = pthread_mutex_t()
  private var wake = pthread_cond_t()

  private static let chunkBits = 20
  private static let chunkMask = (1 << 20) - 1

  init(helpers: Int) {
    self.helpers = helpers
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&wake, nil)
    for _ in 0..<helpers {
      var thread = pthread_t()
      let context = Unmanaged.passRetained(self).toOpaque()
      let status = pthread_create(
        &thread, nil,
        { context in
          let pool = Unmanaged<WorkerPool>.fromOpaque(context!).takeRetainedValue()
          // The helpers only compute: signals go to the process's other threads, never to one
          // inside a library kernel that cannot take a signal frame (see `BLAS`).
          acon_shield_thread_from_signals()
          pool.helperLoop()
          return nil
        }, context)
      precondition(status == 0, "could not start a kernel worker thread (error \(status))")
      pthread_detach(thread)
    }
  }

  /// Runs `body(chunk)` for every chunk in `0..<chunks` on the helpers and the calling thread;
  /// returns false, having run nothing, when another loop holds the pool.
  func run(chunks: Int, _ body: (Int) -> Void) -> Bool {
    precondition(chunks > 0 && chunks <= Self.chunkMask)
    if helpers == 0 { return false }
    guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    else {
      return false
    }
    withoutActuallyEscaping(body) { body in
      self.body = body
      generation = (generation + 1) & ((1 << 22) - 1)
      finished.store(0, ordering: .relaxed)
      state.store(
        generation << 40 | chunks << Self.chunkBits, ordering: .sequentiallyConsistent)
      if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
        pthread_mutex_lock(&mutex)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
      }
      claimChunks(of: generation)
      while finished.load(ordering: .acquiring) < chunks { acon_cpu_relax() }
      self.body = nil
    }
    busy.store(false, ordering: .releasing)
    return true
  }

  /// Claims and runs chunks of loop `generation` until none is left (or a newer loop began).
  private func claimChunks(of generation: Int) {
    while true {
      let current = state.load(ordering: .acquiring)
      let chunks = (current >> Self.chunkBits) & Self.chunkMask
      let next = current & Self.chunkMask
      if current >> 40 != generation || next >= chunks { return }
      if state.compareExchange(
        expected: current, desired: current + 1, ordering: .acquiringAndReleasing
      ).exchanged {
        body!(next)
        finished.add(1, ordering: .releasing)
      }
    }
  }

  private func helperLoop() {
    var seen = 0
    while true {
      var deadline = 0.0
      var spins = 0
      while state.load(ordering: .acquiring) >> 40 == seen {
        spins += 1
        acon_cpu_relax()
        if spins & 63 != 0 { continue }
        let now = monotonicMicroseconds()
        if deadline == 0 {
          deadline = now + Double(Self.spinMicroseconds)
        } else if now > deadline {
          pthread_mutex_lock(&mutex)
          sleepers.add(1, ordering: .sequentiallyConsistent)
          while state.load(ordering: .sequentiallyConsistent) >> 40 == seen {
            pthread_cond_wait(&wake, &mutex)
          }
          sleepers.subtract(1, ordering: .sequentiallyConsistent)
          pthread_mutex_unlock(&mutex)
        }
      }
      seen = state.load(ordering: .acquiring) >> 40
      claimChunks(of: seen)
    }
  }

  private func monotonicMicroseconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) * 1e6 + Double(t.tv_nsec) * 1e-3
  }
}
