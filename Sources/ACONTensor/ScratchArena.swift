#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One reusable scratch buffer per thread for the kernels' workspaces (a convolution's unfolded
/// columns, Winograd's transformed filters and tiles), which live only while one op runs.
///
/// Why not ``BufferPool``: it keys buffers by size and keeps them, so every distinct workspace
/// size of a network would stay cached for good (about 110 MB of them for ResNet-50 at batch 8,
/// 70 MB more peak RSS than this arena). Ops run one after another on a thread, so one buffer,
/// grown to the largest request, serves them all. A request made while the thread's buffer is
/// in use (an op inside an op) takes a buffer from the pool instead.
package final class ScratchArena {
  private var buffer: UnsafeMutablePointer<Float>?
  /// Floats the buffer holds.
  package private(set) var capacity = 0
  private var inUse = false

  package init() {}

  deinit { free(buffer) }

  /// Calls `body` with at least `count` floats of scratch, contents undefined (NaN with
  /// `ACON_POISON_BUFFERS=1`, as the pool's).
  package func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R)
    rethrows
    -> R
  {
    let n = max(count, 1)
    if inUse {
      let pooled = BufferPool.shared.take(n)
      defer { BufferPool.shared.give(pooled, count: n) }
      return try body(pooled)
    }
    if n > capacity {
      free(buffer)
      buffer = nil
      capacity = 0
      var raw: UnsafeMutableRawPointer? = nil
      let status = posix_memalign(&raw, 64, n * MemoryLayout<Float>.stride)
      guard status == 0, let raw else { fatalError("out of memory allocating \(n) floats") }
      buffer = raw.bindMemory(to: Float.self, capacity: n)
      capacity = n
      BufferPool.shared.countSystemAllocation()
    }
    let scratch = buffer!
    if BufferPool.poisons { scratch.update(repeating: .nan, count: n) }
    inUse = true
    defer { inUse = false }
    return try body(scratch)
  }

  /// The calling thread's arena (made on first use, freed when the thread ends).
  package static var current: ScratchArena {
    if let stored = pthread_getspecific(threadKey) {
      return Unmanaged<ScratchArena>.fromOpaque(stored).takeUnretainedValue()
    }
    let arena = ScratchArena()
    pthread_setspecific(threadKey, Unmanaged.passRetained(arena).toOpaque())
    return arena
  }

  /// Calls `body` with at least `count` floats of the calling thread's scratch, or with nil
  /// when `count` is 0.
  package static func withScratch<R>(
    _ count: Int, _ body: (UnsafeMutablePointer<Float>?) throws -> R
  )
    rethrows -> R
  {
    if count <= 0 { return try body(nil) }
    return try current.withScratch(count) { try body($0) }
  }

  private static let threadKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { stored in
      if let stored = stored as UnsafeMutableRawPointer? {
        Unmanaged<ScratchArena>.fromOpaque(stored).release()
      }
    }
    precondition(status == 0, "could not create the scratch arenas' thread key (error \(status))")
    return key
  }()
}
