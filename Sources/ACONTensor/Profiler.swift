#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A per-op wall-time profile of the tape, for finding where a training step goes.
///
/// Off unless `ACON_PROFILE` is set in the environment or inside `recording(true) { }` (as
/// `acon bench --profile` does); when off it costs a task-local read and a branch per recorded op.
///
/// - Forward: every op that reaches ``Tensor/record(_:output:inputs:pullback:)`` is charged the
///   wall time since the previous such op (or since ``mark()``), i.e. its own compute plus the
///   module glue before it. Recorded before the gradient-mode check, so inference is profiled too.
/// - Backward: every pullback is timed exactly, including the accumulation of its gradients.
///
/// Each total also carries the work its op must do at least (``Entry/flops``, ``Entry/bytes``),
/// from which `acon bench --budget` derives a floor per op kind at the machine's measured
/// matrix-product and copy rates.
///
/// Meant for one thread driving the network (a benchmark); the totals are guarded by a lock so
/// another thread recording at the same time cannot corrupt them, only blur them.
public enum Profiler {
  /// Whether ops are being timed on this thread: by default when `ACON_PROFILE` is set, else
  /// inside ``recording(_:_:)``.
  public static var isEnabled: Bool { enabledScope }

  @TaskLocal private static var enabledScope: Bool = getenv("ACON_PROFILE") != nil

  /// Runs `body` with profiling on (or off).
  public static func recording<Result>(_ enabled: Bool, _ body: () throws -> Result) rethrows
    -> Result
  {
    try $enabledScope.withValue(enabled, operation: body)
  }

  /// Totals of one op kind in one phase.
  public struct Entry: Sendable {
    /// "forward" or "backward" (or a phase named by ``Profiler/time(_:_:flops:bytes:_:)``).
    public var phase: String
    /// The op's tape name ("conv2d", "batchNorm(train)", ...).
    public var operation: String
    public var seconds: Double
    public var calls: Int
    /// Floating-point operations the op must do (matrix products only: convolution kernels,
    /// linear layers and `matmul`; 0 for the rest).
    public var flops: Double = 0
    /// Bytes the op must move at least if it ran alone: forward, its inputs read and its
    /// output written; backward, the upstream gradient read and each input read and its
    /// gradient written; a convolution kernel, its operands once each.
    public var bytes: Double = 0
  }

  nonisolated(unsafe) private static var totals: [String: Entry] = [:]
  nonisolated(unsafe) private static var last: UInt64 = 0
  nonisolated(unsafe) private static var lock: pthread_mutex_t = {
    var m = pthread_mutex_t()
    pthread_mutex_init(&m, nil)
    return m
  }()

  /// Nanoseconds of a monotonic clock.
  public static func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  /// Starts the forward clock: the next recorded op is charged from here.
  public static func mark() {
    pthread_mutex_lock(&lock)
    last = now()
    pthread_mutex_unlock(&lock)
  }

  /// Forgets every total.
  public static func reset() {
    pthread_mutex_lock(&lock)
    totals = [:]
    last = now()
    pthread_mutex_unlock(&lock)
  }

  /// Adds `seconds` to the total of `operation` in `phase`.
  public static func add(
    _ phase: String, _ operation: String, seconds: Double, flops: Double = 0, bytes: Double = 0
  ) {
    update(phase, operation) { e in
      e.seconds += seconds
      e.calls += 1
      e.flops += flops
      e.bytes += bytes
    }
  }

  /// Changes the total of `operation` in `phase` (made empty first if there is none) under the
  /// lock.
  private static func update(_ phase: String, _ operation: String, _ change: (inout Entry) -> Void)
  {
    pthread_mutex_lock(&lock)
    let key = phase + "\u{0}" + operation
    var e = totals[key] ?? Entry(phase: phase, operation: operation, seconds: 0, calls: 0)
    change(&e)
    totals[key] = e
    pthread_mutex_unlock(&lock)
  }

  /// Adds `flops` to the work of `operation` in `phase` without counting a call or any time:
  /// for ops whose matrix products run inside their tape entry (a linear layer's), so that
  /// their floor counts the products.
  public static func addWork(_ phase: String, _ operation: String, flops: Double) {
    guard isEnabled else { return }
    update(phase, operation) { $0.flops += flops }
  }

  /// Charges the forward time since the previous mark to `operation`.
  @usableFromInline
  static func forwardMark(_ operation: String, bytes: Double = 0) {
    let t = now()
    pthread_mutex_lock(&lock)
    let start = last
    last = t
    pthread_mutex_unlock(&lock)
    if start != 0 { add("forward", operation, seconds: Double(t &- start) / 1e9, bytes: bytes) }
  }

  /// Runs `body`, charging its wall time to `operation` in `phase` when profiling.
  public static func time<T>(
    _ phase: String, _ operation: String, flops: Double = 0, bytes: Double = 0,
    _ body: () throws -> T
  ) rethrows -> T {
    guard isEnabled else { return try body() }
    let start = now()
    defer {
      add(phase, operation, seconds: Double(now() - start) / 1e9, flops: flops, bytes: bytes)
    }
    return try body()
  }

  /// Every total, largest first.
  public static func entries() -> [Entry] {
    pthread_mutex_lock(&lock)
    defer { pthread_mutex_unlock(&lock) }
    return totals.values.sorted { $0.seconds > $1.seconds }
  }
}
