/// The kernels' switches and tuning, as a value.
///
/// There is no process-wide setting to change: code that wants other options runs under them,
/// ``with(_:_:)``, and they hold for the work that thread starts inside the closure (a task-local
/// value, so concurrent callers — tests running in parallel, two benchmarks — never see each
/// other's choices). The defaults are what the benchmarks chose on the machines measured;
/// `acon bench` and `acon bench-op` expose the tuning values for measurements.
///
/// The kernels read the options on the thread that called them, before they hand work to
/// ``Parallel``'s helpers, so one call never mixes two sets.
public struct KernelOptions: Sendable, Equatable {
  /// Threads the kernels and the matrix products use (default: the processors this process
  /// may run on).
  public var workers: Int = Parallel.availableWorkers
  /// Runs 3x3 stride-1 convolutions that ``WinogradKernel/applies(_:)`` to through Winograd's
  /// minimal filtering (F(4x4, 3x3) or F(2x2, 3x3)); off, they unfold like every other layer.
  public var usesWinograd = true
  /// Winograd takes layers with at least this many input and output channels (thinner ones make
  /// its 16 products too narrow for BLAS).
  public var winogradMinimumChannels = 16
  /// Output tile side of Winograd layers: 4 (F(4x4, 3x3)), 2 (F(2x2, 3x3)) or 0, chosen per layer
  /// by ``WinogradKernel/tileSize(_:)``.
  public var winogradTile = 0
  /// Target floats of one Winograd worker block: its transformed input plus output (2 MB).
  public var winogradBlockFloats = 1 << 19
  /// Cap on the floats of a Winograd layer's transformed input and output, all tiles at once,
  /// for sharing the work by positions instead of tile rows (`WinogradKernel.Tiling.runsWhole`).
  public var winogradWholeLayerFloats = 1 << 22
  /// Fewest tiles of a Winograd block (the products' column count).
  public var winogradMinimumBlockTiles = 64
  /// Matrix products of 1x1 layers aim for at least this many columns (images side by side).
  public var pointwiseTargetColumns = 2048
  /// The same for layers with larger kernels, whose column matrix is `patchSize` times taller.
  /// ResNet-50's 3x3 layers at 28x28 and 14x14 ran 13-15% faster forward + backward with 784
  /// than with 2048 (`acon bench-op --conv`, batch 8): the 3.6-7 MB column matrices stay in
  /// cache, the 10-14 MB ones did not.
  public var unfoldedTargetColumns = 784
  /// Cap on the floats of one column matrix block (32 MB), so that batching never balloons.
  public var maximumColumnFloats = 8 << 20
  /// A 1x1 layer with at least this many output positions runs one product per image straight
  /// from the input (batching only pays for small images: 7x7 and 14x14 measured faster
  /// batched, 28x28 not).
  public var pointwiseDirectColumns = 512
  /// Matrix products of fewer multiply-adds run on the calling thread (a few microseconds of
  /// work, less than a hand-over to another thread).
  public var minimumParallelMatrixWork = 1 << 18

  /// The defaults.
  public init() {}

  /// The options in force on this thread.
  public static var current: KernelOptions { scoped }

  @TaskLocal private static var scoped = KernelOptions()

  /// Runs `body` with `options` in force for the kernels it calls.
  public static func with<Result>(
    _ options: KernelOptions, _ body: () throws -> Result
  ) rethrows -> Result {
    try $scoped.withValue(options, operation: body)
  }

  /// Runs `body` with the current options changed by `change`.
  public static func with<Result>(
    changing change: (inout KernelOptions) -> Void, _ body: () throws -> Result
  ) rethrows -> Result {
    var options = current
    change(&options)
    return try with(options, body)
  }
}
