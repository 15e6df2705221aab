import ACONKernels
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Signals handled while matrix products run. oneDNN 2.x's generated sgemm kernels point the
/// stack register into a heap buffer while they run, so a signal handled on a thread inside one
/// writes its frame over the heap; `acon train`'s Ctrl-C handler aborted a run that way ("corrupted
/// size vs. prev_size" at the next `free`). The products hold signals on the calling thread and
/// the pool's helpers block them, so the handler runs only between products.
@Suite("Signals during matrix products")
struct SignalShieldTests {
  /// A child process installs a handler, and a thread of its own sends a signal every few
  /// microseconds to the thread that runs products, shared and serial, of every transpose and of
  /// the shapes of a small network's layers. (Without the shield this aborts within a few
  /// hundred products.)
  @Test("A barrage of handled signals during products leaves the heap intact")
  func barrageDuringProducts() async {
    await #expect(processExitsWith: .success) {
      SignalBarrage.installHandler()
      let sender = SignalBarrage.start(target: pthread_self())
      var rng = Lcg(state: 11)
      // (m, n, k): pointwise layers of MobileNetV1-0.25 at batch 8 and 28x28, and square ones.
      let shapes = [(64, 1568, 32), (128, 392, 64), (256, 98, 128), (96, 96, 96), (200, 200, 200)]
      let buffers = shapes.map { (m, n, k) in (rng.array(m * k), rng.array(k * n)) }
      var sums = [Float](repeating: 0, count: shapes.count)
      let started = SignalBarrage.handled.load(ordering: .relaxed)
      for round in 0..<400 {
        for (index, (m, n, k)) in shapes.enumerated() {
          var out = [Float](repeating: 0, count: m * n)
          let (transposeA, transposeB) = (round % 2 == 1, round % 4 >= 2)
          BLAS.sgemm(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
            a: buffers[index].0, lda: transposeA ? m : k, b: buffers[index].1,
            ldb: transposeB ? k : n, c: &out, ldc: n, serial: round % 3 == 2)
          sums[index] += out[m * n / 2]
        }
      }
      SignalBarrage.stop(sender)
      // The handler must really have run many times during the products, or nothing was tested.
      let handled = SignalBarrage.handled.load(ordering: .relaxed) - started
      if handled < 500 {
        print("only \(handled) signals handled")
        exit(2)
      }
      if !sums.allSatisfy(\.isFinite) { exit(3) }
    }
  }

  /// A helper of the pool blocks asynchronous signals whatever mask it was started with; the
  /// calling thread's mask is as before once a product returns. (A child process, so that the
  /// pool starts there, from a thread that blocks nothing.)
  @Test func helpersBlockAndCallersRestore() async {
    await #expect(processExitsWith: .success) {
      var nothing = sigset_t()
      sigemptyset(&nothing)
      pthread_sigmask(SIG_SETMASK, &nothing, nil)
      func usr1Blocked() -> Bool {
        var mask = sigset_t()
        pthread_sigmask(SIG_BLOCK, nil, &mask)
        return sigismember(&mask, SIGUSR1) == 1
      }
      let (m, n, k) = (256, 256, 64)
      let a = [Float](repeating: 1, count: m * k)
      let b = [Float](repeating: 1, count: k * n)
      var c = [Float](repeating: 0, count: m * n)
      BLAS.sgemm(
        transposeA: false, transposeB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
        c: &c, ldc: n)
      if usr1Blocked() || !c.allSatisfy({ $0 == Float(k) }) { exit(1) }
      guard Parallel.workers > 1 else { return }
      // Chunks that are not the caller's run on helpers: each must see SIGUSR1 blocked.
      let caller = pthread_self()
      let seen = Mutex<[Bool]>([])
      for _ in 0..<50 {
        Parallel.forEach(Parallel.workers * 4) { _ in
          if pthread_equal(pthread_self(), caller) == 0 {
            let blocked = usr1Blocked()
            seen.withLock { $0.append(blocked) }
          }
          // Long enough for a helper to claim a chunk.
          var x = 0.0
          for i in 0..<20_000 { x += Double(i).squareRoot() }
          precondition(x > 0)
        }
      }
      let helperChunks = seen.withLock { $0 }
      if helperChunks.isEmpty { exit(2) }
      if !helperChunks.allSatisfy({ $0 }) { exit(3) }
    }
  }
}

/// A thread sending SIGUSR1 to another thread until stopped, and a handler that counts.
enum SignalBarrage {
  static let handled = Atomic<Int>(0)
  static let stopping = Atomic<Bool>(false)
  nonisolated(unsafe) static var target = pthread_t()

  /// Installs the handler and unblocks the signal on the calling thread (the test runner may
  /// start its child with signals blocked).
  static func installHandler() {
    signal(SIGUSR1) { _ in _ = SignalBarrage.handled.add(1, ordering: .relaxed) }
    var usr1 = sigset_t()
    sigemptyset(&usr1)
    sigaddset(&usr1, SIGUSR1)
    pthread_sigmask(SIG_UNBLOCK, &usr1, nil)
  }

  static func start(target: pthread_t) -> pthread_t {
    Self.target = target
    var thread = pthread_t()
    let status = pthread_create(
      &thread, nil,
      { _ in
        while !SignalBarrage.stopping.load(ordering: .relaxed) {
          pthread_kill(SignalBarrage.target, SIGUSR1)
          usleep(20)
        }
        return nil
      }, nil)
    precondition(status == 0)
    return thread
  }

  static func stop(_ thread: pthread_t) {
    stopping.store(true, ordering: .relaxed)
    pthread_join(thread, nil)
  }
}
