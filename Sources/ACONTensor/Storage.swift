import ACONKernels

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A pool of float buffers keyed by element count, so that a steady training loop, which asks
/// for the same sizes every step, allocates nothing after its first step.
public final class BufferPool: @unchecked Sendable {
  /// The pool every tensor uses.
  public static let shared = BufferPool()

  private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
  private var cachedBytes = 0
  private var lock = pthread_mutex_t()
  /// Buffers beyond this many cached bytes are returned to the system.
  public var capacityBytes = 4 << 30
  /// Number of buffers obtained from the system, the scratch arenas' included (`acon bench`
  /// reports how many its timed steps took: none in a steady training loop).
  public private(set) var systemAllocations = 0
  /// Bytes handed out by `take` and not yet given back: the memory tensors hold right now
  /// (benchmarks read it to measure what a tape keeps alive for backward).
  public private(set) var liveBytes = 0

  init() { pthread_mutex_init(&lock, nil) }

  /// With `ACON_POISON_BUFFERS=1` in the environment every buffer handed out is filled with
  /// NaN first, so a kernel that reads memory it never wrote shows up as NaN (a debugging aid).
  static let poisons = getenv("ACON_POISON_BUFFERS").map { String(cString: $0) == "1" } ?? false

  /// A buffer of `count` floats, 64-byte aligned, contents undefined.
  package func take(_ count: Int) -> UnsafeMutablePointer<Float> {
    let p = takeUnpoisoned(count)
    if Self.poisons { p.update(repeating: .nan, count: max(count, 1)) }
    return p
  }

  private func takeUnpoisoned(_ count: Int) -> UnsafeMutablePointer<Float> {
    let n = max(count, 1)
    pthread_mutex_lock(&lock)
    liveBytes += n * 4
    if var list = free[n], let p = list.popLast() {
      free[n] = list
      cachedBytes -= n * 4
      pthread_mutex_unlock(&lock)
      return p
    }
    systemAllocations += 1
    pthread_mutex_unlock(&lock)
    var raw: UnsafeMutableRawPointer? = nil
    let status = posix_memalign(&raw, 64, n * MemoryLayout<Float>.stride)
    guard status == 0, let raw else { fatalError("out of memory allocating \(n) floats") }
    return raw.bindMemory(to: Float.self, capacity: n)
  }

  /// Returns a buffer obtained from `take` to the pool.
  package func give(_ p: UnsafeMutablePointer<Float>, count: Int) {
    let n = max(count, 1)
    pthread_mutex_lock(&lock)
    liveBytes -= n * 4
    if cachedBytes + n * 4 <= capacityBytes {
      free[n, default: []].append(p)
      cachedBytes += n * 4
      pthread_mutex_unlock(&lock)
      return
    }
    pthread_mutex_unlock(&lock)
    Glibc.free(p)
  }

  /// Counts a buffer obtained from the system outside the pool (``ScratchArena``'s) in
  /// ``systemAllocations``.
  package func countSystemAllocation() {
    pthread_mutex_lock(&lock)
    systemAllocations += 1
    pthread_mutex_unlock(&lock)
  }

  /// How many buffers of exactly `count` floats the pool holds for reuse.
  package func cachedBufferCount(floats count: Int) -> Int {
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    return free[max(count, 1)]?.count ?? 0
  }

  /// Releases every cached buffer to the system.
  public func trim() {
    pthread_mutex_lock(&lock)
    let lists = free
    free = [:]
    cachedBytes = 0
    pthread_mutex_unlock(&lock)
    for (_, list) in lists { for p in list { Glibc.free(p) } }
  }
}

/// The contiguous float memory behind one or more tensors: a handle that ops pass to their
/// device's ``ComputeBackend``.
public final class TensorStorage: @unchecked Sendable {
  /// The first element (kernel layer and backends only).
  package let pointer: UnsafeMutablePointer<Float>
  /// Number of floats.
  public let count: Int
  /// The device the memory belongs to.
  public let device: Device

  /// Fresh storage from the pool on `device`; contents undefined.
  public init(count: Int, device: Device = .current) {
    self.count = count
    self.device = device
    self.pointer = BufferPool.shared.take(count)
  }

  deinit { BufferPool.shared.give(pointer, count: count) }
}
