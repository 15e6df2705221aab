/// 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) (Lavin
/// and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
///
/// Each `m x m` block of outputs (a tile, `m` = 2 or 4) is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for
/// its `(m + 2) x (m + 2)` input patch `d` and the 3x3 filter `g`. Summed over input channels, the
/// `(m + 2)²` positions ξ of the transformed tile become as many independent matrix products
/// `M[ξ] = U[ξ] V[ξ]` (`U`: `[out, in]` transformed filters, `V`: `[in, tiles]` transformed
/// patches), so a layer's products shrink from 9 multiply-adds per output and channel pair to 4
/// (F(2x2)) or 2.25 (F(4x4)). F(4x4) takes the layers where its larger tiles waste little at the
/// edges (``tileSize(_:)``); its transforms are in `Winograd4x4.swift`.
///
/// Backward uses the same pieces, exactly the chain rule of the forward algorithm:
/// - input gradient: a forward Winograd convolution of `dy` with the filters rotated by 180°,
///   transposed (in <-> out) and padded by `2 - padding`: the rotated filters are transformed
///   into the forward layout and read transposed;
/// - weight gradient: `dU[ξ] = Σ_tiles dM[ξ] V[ξ]ᵀ` with `dM = A dY Aᵀ` per output tile, then
///   `dg = Gᵀ dU G`.
///
/// Tiles run in blocks of whole tile rows (possibly spanning images), sized so that the
/// transformed input and output of one block (``blockFloats``) stay in cache between the
/// transforms and the products. Each worker of ``Parallel`` takes its own run of tile rows,
/// block after block, with serial products.
///
/// Rounding differs from the direct sum (the transforms add and subtract inputs before the
/// products, F(4x4)'s with factors up to 8): the kernel tests hold every output and gradient
/// within 1e-5 (F(2x2)) or 1e-4 (F(4x4)) of a Float64 direct sum, relative to `1 + |value|`, on
/// layers of up to 24 channels (the error grows with the channels summed), and the PyTorch
/// goldens within 1e-5 relative L2.
public enum WinogradKernel {
  /// Layers with fewer input or output channels use ``Im2col``: their 16 products are too thin
  /// for BLAS to run at speed (``KernelOptions/winogradMinimumChannels``).
  public static var minimumChannels: Int { KernelOptions.current.winogradMinimumChannels }
  /// Target floats of one worker's block (``KernelOptions/winogradBlockFloats``).
  public static var blockFloats: Int { KernelOptions.current.winogradBlockFloats }
  /// Fewest tiles of a block, whatever ``blockFloats`` says
  /// (``KernelOptions/winogradMinimumBlockTiles``).
  public static var minimumBlockTiles: Int { KernelOptions.current.winogradMinimumBlockTiles }

  /// Whether ``Convolution`` runs `g` here: 3x3, stride 1, dilation 1, one group, padding at
  /// most 2 (the input gradient pads by `2 - padding`) and enough channels.
  public static func applies(_ g: ConvGeometry) -> Bool {
    g.kernelHeight == 3 && g.kernelWidth == 3 && g.stride == 1 && g.dilation == 1
      && g.groups == 1 && g.padding <= 2 && g.inChannels >= minimumChannels
      && g.outChannels >= minimumChannels
  }

  /// The output tile's side for `g`: 2 or 4 as ``KernelOptions/winogradTile`` says, or chosen.
  ///
  /// F(4x4, 3x3) runs where its products are at least a quarter fewer than F(2x2, 3x3)'s and
  /// are wide enough: images of at least 36 of its tiles (outputs from about 24x24), or layers
  /// of 256 channels and more whose batch holds at least 32 of its tiles. Otherwise its products
  /// are too thin and its filters (36 positions, not 16) too many bytes per tile. Measured with
  /// `acon bench-op --winograd-tile 2|4 --best`, forward + backward, 3 rounds alternating:
  /// 64 channels at 56x56 and 128 at 28x28 ran 1.2-1.4x faster with F(4x4) at batch 8; 512 at 7x7
  /// 22.3-22.6 -> 19.7-19.8 ms at batch 8 and 79 -> 59 at batch 32, but 16.4 -> 17.6 at batch 4;
  /// 256 at 14x14 16.0-16.2 -> 14.9-15.0 at batch 8, 10.5-10.8 -> 9.4-9.6 at batch 4, level at
  /// batch 2; 256 at 7x7 7.7-8.8 -> 6.7-7.3 at batch 8; while at batch 8 64 channels at 7x7 (0.87
  /// -> 1.31), 64 at 14x14 (1.6 -> 1.9) and 128 at 14x14 (4.6-4.8 -> 4.8-4.9) ran slower.
  public static func tileSize(_ g: ConvGeometry) -> Int {
    let chosen = KernelOptions.current.winogradTile
    if chosen == 2 || chosen == 4 { return chosen }
    func tiles(_ tile: Int) -> Int {
      ((g.outHeight + tile - 1) / tile) * ((g.outWidth + tile - 1) / tile)
    }
    let fewerProducts = 4 * 36 * tiles(4) <= 3 * 16 * tiles(2)
    let largeImages = tiles(4) >= 36
    let wideLayer = min(g.inChannels, g.outChannels) >= 256 && g.batch * tiles(4) >= 32
    return fewerProducts && (largeImages || wideLayer) ? 4 : 2
  }

  /// Whether the workers share `g`'s products by positions, each over every tile of the batch,
  /// rather than by runs of tile rows (small images with many channels).
  public static func sharesPositions(_ g: ConvGeometry) -> Bool {
    forwardTiling(g, blockFloats: blockFloats).runsWhole
  }

  /// One convolution's tiling: `channels` input planes of `height x width`, padded by
  /// `padding`, giving `outChannels` planes of `outHeight x outWidth` in `tile x tile` tiles,
  /// each from a `(tile + 2) x (tile + 2)` input patch.
  struct Tiling {
    let tile: Int
    let batch: Int, channels: Int, height: Int, width: Int, padding: Int
    let outChannels: Int, outHeight: Int, outWidth: Int
    /// The target of ``blockWorkspace``.
    let blockFloats: Int
    /// Read when the tiling is made, on the calling thread, like every option.
    let minimumBlockTiles = WinogradKernel.minimumBlockTiles
    let wholeLayerFloats = KernelOptions.current.winogradWholeLayerFloats

    /// Positions ξ of a transformed tile: the products per block.
    var positions: Int { (tile + 2) * (tile + 2) }
    /// Tiles down and across one image.
    var tileRows: Int { (outHeight + tile - 1) / tile }
    var tileColumns: Int { (outWidth + tile - 1) / tile }
    /// Tile rows of the whole batch, image after image.
    var totalTileRows: Int { batch * tileRows }

    /// Tile rows per block when `workers` share the rows: as many as fit ``blockFloats``, at
    /// least one.
    func blockTileRows(workers: Int) -> Int {
      let perRow = positions * (channels + outChannels) * tileColumns
      let perWorker = (totalTileRows + workers - 1) / workers
      let fitting = blockFloats / max(1, perRow)
      // Wide layers on small images: the products need enough columns to amortise reading
      // their `[out, in]` filters once per block.
      let wideEnough = (minimumBlockTiles + tileColumns - 1) / tileColumns
      return max(1, min(perWorker, max(fitting, wideEnough)))
    }

    /// Floats from one channel's tiles to the next in a block of `rows` tile rows: eight spare
    /// floats, so that the transforms' 8-tile vectors never need a masked load or store.
    func channelStride(_ rows: Int) -> Int { (rows * tileColumns + 7) / 8 * 8 + 8 }

    /// Floats from one position's matrix of `count` channels to the next in a block of `rows`
    /// tile rows: an odd number of cache lines. The transforms write (or read) all positions of
    /// a tile at once, 16 or 36 streams; an odd line count puts each in its own set of the L1
    /// cache, where matrices a multiple of 4 KB apart shared one set, more streams than its
    /// ways (F(4x4)'s input transform of 128 channels at 28x28, one thread: 2.6 -> 1.3 ms).
    func positionStride(_ count: Int, _ rows: Int) -> Int {
      ((count * channelStride(rows) + 15) / 16 | 1) * 16
    }

    /// Floats of one block's transformed input and output.
    func blockWorkspace(workers: Int) -> Int {
      let rows = blockTileRows(workers: workers)
      return positions * (positionStride(channels, rows) + positionStride(outChannels, rows))
    }

    /// Floats of the whole layer's transformed input and output, all tiles at once.
    var wholeLayerWorkspace: Int {
      positions
        * (positionStride(channels, totalTileRows) + positionStride(outChannels, totalTileRows))
    }

    /// Whether the workers share the layer by positions rather than by tile rows: each
    /// transform split by channels, then each worker runs its positions' products over every
    /// tile of the batch. Taken where the transformed filters outweigh the whole layer's
    /// transformed input and output, and those fit ``KernelOptions/winogradWholeLayerFloats``
    /// (small images, many channels): there each worker's run of tile rows read every filter
    /// matrix for products of a few dozen columns, and its weight gradient summed into a partial
    /// `dU` of its own. ResNet-50's 512 channels at 7x7, batch 8, forward 8.2-8.5 -> 7.5-7.8 ms,
    /// weight gradient 10.2-11.1 -> 9.2-9.8 ms; at 28x28, where the filters are the smaller
    /// part, sharing positions was 15% slower.
    var runsWhole: Bool {
      WinogradKernel.workerCount(self) > 1 && wholeLayerWorkspace <= filterFloats
        && wholeLayerWorkspace <= wholeLayerFloats
    }

    /// Copies of `dU` the weight gradient sums into: one per worker when they share tile rows.
    var weightGradientCopies: Int { runsWhole ? 1 : WinogradKernel.workerCount(self) }

    /// Floats of every worker's block, or of the whole layer.
    var workspace: Int {
      if runsWhole { return wholeLayerWorkspace }
      let workers = WinogradKernel.workerCount(self)
      return workers * blockWorkspace(workers: workers)
    }

    /// Floats of one padded scratch row: room for the 8-tile vector loop's `8 * tile` + `tile`
    /// reads past the last group of tiles and for the padded input row.
    var scratchRow: Int {
      max(tile * ((tileColumns + 7) / 8 * 8) + 9 * tile + 8, width + padding + 16)
    }

    /// Floats of the transformed filters, `[positions][outChannels][channels]`.
    var filterFloats: Int { positions * outChannels * channels }
  }

  static func forwardTiling(_ g: ConvGeometry, blockFloats: Int) -> Tiling {
    Tiling(
      tile: tileSize(g), batch: g.batch, channels: g.inChannels, height: g.height, width: g.width,
      padding: g.padding, outChannels: g.outChannels, outHeight: g.outHeight,
      outWidth: g.outWidth, blockFloats: blockFloats)
  }

  /// The input gradient's tiling: `dy` convolved back to the input's size.
  static func inputGradientTiling(_ g: ConvGeometry, blockFloats: Int) -> Tiling {
    Tiling(
      tile: tileSize(g), batch: g.batch, channels: g.outChannels, height: g.outHeight,
      width: g.outWidth,
      padding: 2 - g.padding, outChannels: g.inChannels, outHeight: g.height, outWidth: g.width,
      blockFloats: blockFloats)
  }

  /// Floats of scratch memory ``forward(_:input:weight:bias:output:workspace:blockFloats:)``
  /// needs.
  public static func forwardWorkspaceCount(
    _ g: ConvGeometry, blockFloats: Int = WinogradKernel.blockFloats
  ) -> Int {
    let tiling = forwardTiling(g, blockFloats: blockFloats)
    return tiling.filterFloats + tiling.workspace
  }

  /// Floats of scratch memory
  /// ``backward(_:input:weight:outputGrad:inputGrad:weightGrad:workspace:blockFloats:)`` needs.
  public static func backwardWorkspaceCount(
    _ g: ConvGeometry, blockFloats: Int = WinogradKernel.blockFloats
  ) -> Int {
    let forward = forwardTiling(g, blockFloats: blockFloats)
    // The transformed filters (or dU), each extra worker's partial dU, and the blocks.
    return forward.filterFloats * forward.weightGradientCopies
      + max(forward.workspace, inputGradientTiling(g, blockFloats: blockFloats).workspace)
  }

  /// `y = conv(x, w) + b` for a geometry that ``applies(_:)``; same arguments as
  /// ``ConvolutionKernel/forward(_:input:weight:bias:output:workspace:)``; `blockFloats` overrides
  /// ``blockFloats`` for this call (the workspace must be sized with the same value).
  public static func forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>, blockFloats: Int = WinogradKernel.blockFloats
  ) {
    precondition(applies(g), "WinogradKernel.forward: unsupported \(g)")
    let tiling = forwardTiling(g, blockFloats: blockFloats)
    transformFilters(
      weight, outChannels: g.outChannels, inChannels: g.inChannels, tile: tiling.tile,
      rotated: false, into: workspace)
    convolve(
      tiling, input: x, filters: UnsafePointer(workspace), readTransposed: false, bias: bias,
      output: y, workspace: workspace + tiling.filterFloats)
  }

  /// Gradients of `y = conv(x, w)` (bias excluded) for a geometry that ``applies(_:)``; each
  /// non-nil output is overwritten. `blockFloats` as in
  /// ``forward(_:input:weight:bias:output:workspace:blockFloats:)``.
  public static func backward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?, workspace: UnsafeMutablePointer<Float>,
    blockFloats: Int = WinogradKernel.blockFloats
  ) {
    precondition(applies(g), "WinogradKernel.backward: unsupported \(g)")
    let forwardTiling = forwardTiling(g, blockFloats: blockFloats)
    let filterFloats = forwardTiling.filterFloats
    let blocks = workspace + filterFloats * forwardTiling.weightGradientCopies
    if let dw {
      weightGradient(
        forwardTiling, input: x, outputGrad: dy, transformed: workspace,
        partials: workspace + filterFloats, blocks: blocks)
      untransformFilterGradient(
        UnsafePointer(workspace), outChannels: g.outChannels, inChannels: g.inChannels,
        tile: forwardTiling.tile, into: dw)
    }
    if let dx {
      transformFilters(
        weight, outChannels: g.outChannels, inChannels: g.inChannels, tile: forwardTiling.tile,
        rotated: true, into: workspace)
      convolve(
        inputGradientTiling(g, blockFloats: blockFloats), input: dy,
        filters: UnsafePointer(workspace), readTransposed: true,
        bias: nil, output: dx, workspace: blocks)
    }
  }

  // MARK: - The block loop

  /// A Winograd convolution of `t.channels` input planes into `t.outChannels` output planes.
  ///
  /// `filters` holds `U[ξ]` as `[positions][outChannels][channels]`; with `readTransposed` it
  /// holds the transforms of the rotated filters of the convolution whose input gradient this is,
  /// laid out `[positions][channels][outChannels]` and read transposed.
  static func convolve(
    _ t: Tiling, input x: UnsafePointer<Float>, filters u: UnsafePointer<Float>,
    readTransposed: Bool, bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>
  ) {
    let (cin, cout) = (t.channels, t.outChannels)
    // M[ξ] = U[ξ] V[ξ] for the positions `xis`, `rows` tile rows in `v` and `m`.
    func products(
      _ xis: Range<Int>, _ v: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>,
      rows: Int
    ) {
      let (tiles, lt) = (rows * t.tileColumns, t.channelStride(rows))
      let (ldv, ldm) = (t.positionStride(cin, rows), t.positionStride(cout, rows))
      for xi in xis {
        if readTransposed {
          BLAS.sgemm(
            transposeA: true, transposeB: false, m: cout, n: tiles, k: cin,
            a: u + xi * cin * cout, lda: cout, b: v + xi * ldv, ldb: lt,
            c: m + xi * ldm, ldc: lt, serial: true)
        } else {
          BLAS.sgemm(
            transposeA: false, transposeB: false, m: cout, n: tiles, k: cin,
            a: u + xi * cout * cin, lda: cin, b: v + xi * ldv, ldb: lt,
            c: m + xi * ldm, ldc: lt, serial: true)
        }
      }
    }
    if t.runsWhole {
      let rows = t.totalTileRows
      let v = workspace
      let m = workspace + t.positions * t.positionStride(cin, rows)
      Parallel.forRanges(cin, minimumChunk: 1) { channels in
        transformInput(t, x, firstRow: 0, rows: rows, channels: channels, into: v)
      }
      Parallel.forRanges(t.positions, minimumChunk: 1) { products($0, v, m, rows: rows) }
      Parallel.forRanges(cout, minimumChunk: 1) { channels in
        transformOutput(
          t, UnsafePointer(m), firstRow: 0, rows: rows, channels: channels, bias: bias, into: y)
      }
      return
    }
    forEachBlockOfEachWorker(t, workspace: workspace) { _, block, firstRow, rows in
      let v = block
      let m = block + t.positions * t.positionStride(cin, rows)
      transformInput(t, x, firstRow: firstRow, rows: rows, channels: 0..<cin, into: v)
      products(0..<t.positions, v, m, rows: rows)
      transformOutput(
        t, UnsafePointer(m), firstRow: firstRow, rows: rows, channels: 0..<cout, bias: bias,
        into: y)
    }
  }

  /// `dU[ξ] = Σ_tiles dM[ξ] V[ξ]ᵀ` into `transformed` (`[positions][outChannels][channels]`).
  /// Sharing tile rows, each worker sums its tiles into its own copy (`partials`, one per worker
  /// after the first), and the copies are added in worker order; sharing positions
  /// (``Tiling/runsWhole``), each position's product runs over every tile at once. Either way
  /// the result does not depend on timing.
  static func weightGradient(
    _ t: Tiling, input x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    transformed du: UnsafeMutablePointer<Float>, partials: UnsafeMutablePointer<Float>,
    blocks: UnsafeMutablePointer<Float>
  ) {
    let (cin, cout) = (t.channels, t.outChannels)
    let filterFloats = t.filterFloats
    // dU[ξ] (+)= dM[ξ] V[ξ]ᵀ for the positions `xis`, `rows` tile rows in `v` and `dm`.
    func products(
      _ xis: Range<Int>, _ v: UnsafeMutablePointer<Float>, _ dm: UnsafeMutablePointer<Float>,
      rows: Int, accumulating: Bool, into sum: UnsafeMutablePointer<Float>
    ) {
      let (tiles, lt) = (rows * t.tileColumns, t.channelStride(rows))
      let (ldv, ldm) = (t.positionStride(cin, rows), t.positionStride(cout, rows))
      for xi in xis {
        BLAS.sgemm(
          transposeA: false, transposeB: true, m: cout, n: cin, k: tiles,
          a: dm + xi * ldm, lda: lt, b: v + xi * ldv, ldb: lt,
          beta: accumulating ? 1 : 0, c: sum + xi * cout * cin, ldc: cin, serial: true)
      }
    }
    if t.runsWhole {
      let rows = t.totalTileRows
      let v = blocks
      let dm = blocks + t.positions * t.positionStride(cin, rows)
      Parallel.forRanges(cin, minimumChunk: 1) { channels in
        transformInput(t, x, firstRow: 0, rows: rows, channels: channels, into: v)
      }
      Parallel.forRanges(cout, minimumChunk: 1) { channels in
        transformOutputGradient(t, dy, firstRow: 0, rows: rows, channels: channels, into: dm)
      }
      Parallel.forRanges(t.positions, minimumChunk: 1) {
        products($0, v, dm, rows: rows, accumulating: false, into: du)
      }
      return
    }
    let workers = workerCount(t)
    forEachBlockOfEachWorker(t, workspace: blocks) { worker, block, firstRow, rows in
      let v = block
      let dm = block + t.positions * t.positionStride(cin, rows)
      let sum = worker == 0 ? du : partials + (worker - 1) * filterFloats
      let first = firstRow == t.totalTileRows * worker / workers
      transformInput(t, x, firstRow: firstRow, rows: rows, channels: 0..<cin, into: v)
      transformOutputGradient(t, dy, firstRow: firstRow, rows: rows, channels: 0..<cout, into: dm)
      products(0..<t.positions, v, dm, rows: rows, accumulating: !first, into: sum)
    }
    for worker in 1..<max(1, workers) {
      ElementwiseKernel.add(du, partials + (worker - 1) * filterFloats, du, count: filterFloats)
    }
  }

  /// Workers that share a tiling's tile rows: at most one per row.
  static func workerCount(_ t: Tiling) -> Int { max(1, min(Parallel.workers, t.totalTileRows)) }

  /// Splits the tile rows into one contiguous run per worker and calls
  /// `body(worker, block, firstRow, rows)` for each block of each run, on that worker, with
  /// the worker's own ``Tiling/blockWorkspace`` floats of `workspace` as `block`.
  ///
  /// Each worker runs whole blocks (transforms and products) alone, its products serial: the
  /// products of one block are small, and sharing each between the workers, block by block,
  /// cost more in hand-overs than the products themselves.
  static func forEachBlockOfEachWorker(
    _ t: Tiling, workspace: UnsafeMutablePointer<Float>,
    _ body: (_ worker: Int, _ block: UnsafeMutablePointer<Float>, _ firstRow: Int, _ rows: Int) ->
      Void
  ) {
    let workers = workerCount(t)
    let perBlock = t.blockTileRows(workers: workers)
    let blockFloats = t.blockWorkspace(workers: workers)
    Parallel.forEach(workers) { worker in
      let end = t.totalTileRows * (worker + 1) / workers
      var first = t.totalTileRows * worker / workers
      while first < end {
        let rows = min(perBlock, end - first)
        body(worker, workspace + worker * blockFloats, first, rows)
        first += rows
      }
    }
  }

  // MARK: - Transforms

  typealias Quad = (Float8, Float8, Float8, Float8)

  /// `Bᵀ a` for one 4-vector (`Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]`).
  @inline(__always)
  static func inputTransform(_ a: Quad) -> Quad { (a.0 - a.2, a.1 + a.2, a.2 - a.1, a.1 - a.3) }

  /// `Aᵀ a` (`Aᵀ = [1 1 1 0; 0 1 -1 -1]`).
  @inline(__always)
  static func outputTransform(_ a: Quad) -> (Float8, Float8) { (a.0 + a.1 + a.2, a.1 - a.2 - a.3) }

  /// `A a`, the adjoint of ``outputTransform(_:)``.
  @inline(__always)
  static func outputTransformAdjoint(_ a: Float8, _ b: Float8) -> Quad { (a, a + b, a - b, -b) }

  /// `V[ξ][c][tile] = (Bᵀ d B)[ξ]` for the input channels `channels` and the block's tiles; `v`
  /// is `[positions][t.channels][channelStride(rows)]`, positions ``Tiling/positionStride(_:_:)``
  /// apart.
  static func transformInput(
    _ t: Tiling, _ x: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    into v: UnsafeMutablePointer<Float>
  ) {
    if t.tile == 4 {
      return transformInput4x4(
        t, x, firstRow: firstRow, rows: rows, channels: channels, into: v)
    }
    let ld = t.positionStride(t.channels, rows)
    // Each tile row's four input rows, zero-padded: scratch column j is input column j - p.
    forEachLoadedTileGroup(
      t, from: x, planeChannels: t.channels, height: t.height, width: t.width,
      shift: t.padding, count: 4, firstRow: firstRow, rows: rows, channels: channels, into: v
    ) { scratch, stride, o, tx in
      // Row i of eight patches: columns 2tx + (0, 1) and 2tx + (2, 3) are the even and odd
      // lanes of two 16-float runs.
      func patchRow(_ i: Int) -> Quad {
        let line = scratch + i * stride + 2 * tx
        let a = loadDeinterleaved(line)
        let b = loadDeinterleaved(line + 2)
        return (a.even, a.odd, b.even, b.odd)
      }
      // d B row by row, then Bᵀ (d B) column by column.
      let e0 = inputTransform(patchRow(0))
      let e1 = inputTransform(patchRow(1))
      let e2 = inputTransform(patchRow(2))
      let e3 = inputTransform(patchRow(3))
      func put(_ j: Int, _ column: Quad) { storeColumn(column, j, o, ld) }
      put(0, inputTransform((e0.0, e1.0, e2.0, e3.0)))
      put(1, inputTransform((e0.1, e1.1, e2.1, e3.1)))
      put(2, inputTransform((e0.2, e1.2, e2.2, e3.2)))
      put(3, inputTransform((e0.3, e1.3, e2.3, e3.3)))
    }
  }

  /// `Y = Aᵀ M A (+ bias)` for the output channels `channels` of the block's tiles, cropped to
  /// the output; `m` is `[positions][t.outChannels][channelStride(rows)]`, positions
  /// ``Tiling/positionStride(_:_:)`` apart.
  static func transformOutput(
    _ t: Tiling, _ m: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
  ) {
    if t.tile == 4 {
      return transformOutput4x4(
        t, m, firstRow: firstRow, rows: rows, channels: channels, bias: bias, into: y)
    }
    let ld = t.positionStride(t.outChannels, rows)
    forEachStoredTileGroup(
      t, from: m, firstRow: firstRow, rows: rows, channels: channels, bias: bias, into: y
    ) { s, b, scratch, stride, tx in
      func column(_ j: Int) -> (Float8, Float8) {
        outputTransform(
          (
            load8(s + j * ld), load8(s + (4 + j) * ld), load8(s + (8 + j) * ld),
            load8(s + (12 + j) * ld)
          ))
      }
      // Aᵀ M column by column, then (Aᵀ M) A row by row.
      let c0 = column(0)
      let c1 = column(1)
      let c2 = column(2)
      let c3 = column(3)
      let top = outputTransform((c0.0, c1.0, c2.0, c3.0))
      let bottom = outputTransform((c0.1, c1.1, c2.1, c3.1))
      storeInterleaved(top.0 + b, top.1 + b, scratch + 2 * tx)
      storeInterleaved(bottom.0 + b, bottom.1 + b, scratch + stride + 2 * tx)
    }
  }

  /// `dM = A dY Aᵀ` for the output channels `channels` of the block's tiles (zero beyond the
  /// output); `dm` is `[positions][t.outChannels][channelStride(rows)]`, positions
  /// ``Tiling/positionStride(_:_:)`` apart.
  static func transformOutputGradient(
    _ t: Tiling, _ dy: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    into dm: UnsafeMutablePointer<Float>
  ) {
    if t.tile == 4 {
      return transformOutputGradient4x4(
        t, dy, firstRow: firstRow, rows: rows, channels: channels, into: dm)
    }
    let ld = t.positionStride(t.outChannels, rows)
    // Each tile row's two output rows, zero past the output's edges.
    forEachLoadedTileGroup(
      t, from: dy, planeChannels: t.outChannels, height: t.outHeight, width: t.outWidth,
      shift: 0, count: 2, firstRow: firstRow, rows: rows, channels: channels, into: dm
    ) { scratch, stride, o, tx in
      let top = loadDeinterleaved(scratch + 2 * tx)
      let bottom = loadDeinterleaved(scratch + stride + 2 * tx)
      // dY Aᵀ (rows), then A (dY Aᵀ) (columns).
      let e0 = outputTransformAdjoint(top.even, top.odd)
      let e1 = outputTransformAdjoint(bottom.even, bottom.odd)
      func put(_ j: Int, _ column: Quad) { storeColumn(column, j, o, ld) }
      put(0, outputTransformAdjoint(e0.0, e1.0))
      put(1, outputTransformAdjoint(e0.1, e1.1))
      put(2, outputTransformAdjoint(e0.2, e1.2))
      put(3, outputTransformAdjoint(e0.3, e1.3))
    }
  }

  /// The frame of the input and output-gradient transforms: for every channel in `channels` of
  /// `from` (`planeChannels` planes of `height x width` per image) and every tile row of the
  /// block, loads the `count` plane rows from `tile * tileRow - shift` into scratch rows
  /// (``loadRows(_:height:width:first:count:shift:into:stride:)``), then calls
  /// `body(scratch, stride, o, tx)` for each group of eight tiles from column `tx`, `o` being
  /// where that group's position-0 vector goes in `into`.
  @inline(__always)
  static func forEachLoadedTileGroup(
    _ t: Tiling, from planes: UnsafePointer<Float>, planeChannels: Int, height: Int, width: Int,
    shift: Int, count: Int, firstRow: Int, rows: Int, channels: Range<Int>,
    into out: UnsafeMutablePointer<Float>,
    _ body: (
      _ scratch: UnsafeMutablePointer<Float>, _ stride: Int, _ o: UnsafeMutablePointer<Float>,
      _ tx: Int
    ) -> Void
  ) {
    let (lt, stride, tw) = (t.channelStride(rows), t.scratchRow, t.tileColumns)
    forEachTileRow(t, channels: channels, firstRow: firstRow, rows: rows, scratchRows: count) {
      c, r, n, ty, scratch in
      loadRows(
        planes + (n * planeChannels + c) * height * width, height: height, width: width,
        first: t.tile * ty - shift, count: count, shift: shift, into: scratch, stride: stride)
      let groups = out + c * lt + r * tw
      var tx = 0
      while tx < tw {
        body(scratch, stride, groups + tx, tx)
        tx += 8
      }
    }
  }

  /// The frame of the output transforms: for every channel `k` in `channels` and every tile row
  /// of the block, calls `body(s, b, scratch, stride, tx)` for each group of eight tiles from
  /// column `tx` (`s`: that group's position-0 vector in `from`, `b`: channel `k`'s bias in every
  /// lane), which writes the group's `tile` output rows into the scratch rows; then copies those
  /// rows, cropped to the output, into plane `k` of `into`.
  @inline(__always)
  static func forEachStoredTileGroup(
    _ t: Tiling, from m: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
    _ body: (
      _ s: UnsafePointer<Float>, _ b: Float8, _ scratch: UnsafeMutablePointer<Float>,
      _ stride: Int, _ tx: Int
    ) -> Void
  ) {
    let (oh, ow, tw) = (t.outHeight, t.outWidth, t.tileColumns)
    let (lt, stride) = (t.channelStride(rows), t.scratchRow)
    forEachTileRow(t, channels: channels, firstRow: firstRow, rows: rows, scratchRows: t.tile) {
      k, r, n, ty, scratch in
      let b = bias.map { Float8(repeating: $0[k]) } ?? Float8()
      let source = m + k * lt + r * tw
      var tx = 0
      while tx < tw {
        body(source + tx, b, scratch, stride, tx)
        tx += 8
      }
      let plane = y + (n * t.outChannels + k) * oh * ow
      for i in 0..<t.tile where t.tile * ty + i < oh {
        (plane + (t.tile * ty + i) * ow).update(from: scratch + i * stride, count: ow)
      }
    }
  }

  /// Calls `body(channel, r, image, tileRow, scratch)` for every channel in `channels` and every
  /// tile row `r` of the block, with `scratchRows` rows of ``Tiling/scratchRow`` floats of
  /// scratch on the stack.
  @inline(__always)
  static func forEachTileRow(
    _ t: Tiling, channels: Range<Int>, firstRow: Int, rows: Int, scratchRows: Int,
    _ body: (
      _ channel: Int, _ r: Int, _ image: Int, _ tileRow: Int, _ scratch: UnsafeMutablePointer<Float>
    ) -> Void
  ) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: scratchRows * t.scratchRow) { buffer in
      for c in channels {
        for r in 0..<rows {
          let (n, ty) = (firstRow + r).quotientAndRemainder(dividingBy: t.tileRows)
          body(c, r, n, ty, buffer.baseAddress!)
        }
      }
    }
  }

  /// Copies rows `first ..< first + count` of a `height x width` plane into scratch rows
  /// `stride` floats apart, each shifted right by `shift` and zero-padded to `stride`; rows
  /// outside the plane are all zero.
  @inline(__always)
  static func loadRows(
    _ plane: UnsafePointer<Float>, height: Int, width: Int, first: Int, count: Int, shift: Int,
    into scratch: UnsafeMutablePointer<Float>, stride: Int
  ) {
    for i in 0..<count {
      let line = scratch + i * stride
      let row = first + i
      if row >= 0 && row < height {
        line.update(repeating: 0, count: shift)
        (line + shift).update(from: plane + row * width, count: width)
        (line + shift + width).update(repeating: 0, count: stride - shift - width)
      } else {
        line.update(repeating: 0, count: stride)
      }
    }
  }

  /// Stores column `j` of a transformed 4x4 tile, rows 0 to 3 (positions ξ = j, 4 + j, 8 + j,
  /// 12 + j), eight tiles at a time; `ld` floats from one position's matrix to the next.
  @inline(__always)
  static func storeColumn(_ column: Quad, _ j: Int, _ o: UnsafeMutablePointer<Float>, _ ld: Int) {
    store8(column.0, o + j * ld)
    store8(column.1, o + (4 + j) * ld)
    store8(column.2, o + (8 + j) * ld)
    store8(column.3, o + (12 + j) * ld)
  }

  /// Writes `a[0], b[0], a[1], b[1], ...` (16 floats) to `p`.
  @inline(__always)
  static func storeInterleaved(_ a: Float8, _ b: Float8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: interleaved(a, b), as: SIMD16<Float>.self)
  }

  /// `U[ξ][k][c] = (G g Gᵀ)[ξ]` for every filter `g = w[k][c]`, or its 180° rotation when
  /// `rotated` (for the input gradient), eight input channels at a time; `tile` chooses F(2x2, 3x3)
  /// (`G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]`) or F(4x4, 3x3) (``transformFilters4x4``).
  static func transformFilters(
    _ w: UnsafePointer<Float>, outChannels: Int, inChannels: Int, tile: Int, rotated: Bool,
    into u: UnsafeMutablePointer<Float>
  ) {
    if tile == 4 {
      return transformFilters4x4(
        w, outChannels: outChannels, inChannels: inChannels, rotated: rotated, into: u)
    }
    let ld = outChannels * inChannels
    let half = Float8(repeating: 0.5)
    func g(_ a: Float8, _ b: Float8, _ c: Float8) -> Quad {
      (a, half * (a + b + c), half * (a - b + c), c)
    }
    forEachFilterGroup(outChannels: outChannels, inChannels: inChannels) { k, c, lanes in
      let f = w + (k * inChannels + c) * 9
      // Tap e of the eight filters: every ninth float.
      func tap(_ e: Int) -> Float8 { filterTap(f, rotated ? 8 - e : e, lanes: lanes) }
      // G g: each filter column to 4 rows; then (G g) Gᵀ: each row to 4 columns.
      let c0 = g(tap(0), tap(3), tap(6))
      let c1 = g(tap(1), tap(4), tap(7))
      let c2 = g(tap(2), tap(5), tap(8))
      let o = u + k * inChannels + c
      func put(_ i: Int, _ r: Quad) {
        store8(r.0, o + (4 * i) * ld, lanes: lanes)
        store8(r.1, o + (4 * i + 1) * ld, lanes: lanes)
        store8(r.2, o + (4 * i + 2) * ld, lanes: lanes)
        store8(r.3, o + (4 * i + 3) * ld, lanes: lanes)
      }
      put(0, g(c0.0, c1.0, c2.0))
      put(1, g(c0.1, c1.1, c2.1))
      put(2, g(c0.2, c1.2, c2.2))
      put(3, g(c0.3, c1.3, c2.3))
    }
  }

  /// `dw[k][c] = Gᵀ dU[k][c] G`, the adjoint of
  /// ``transformFilters(_:outChannels:inChannels:tile:rotated:into:)`` (unrotated).
  static func untransformFilterGradient(
    _ du: UnsafePointer<Float>, outChannels: Int, inChannels: Int, tile: Int,
    into dw: UnsafeMutablePointer<Float>
  ) {
    if tile == 4 {
      return untransformFilterGradient4x4(
        du, outChannels: outChannels, inChannels: inChannels, into: dw)
    }
    let ld = outChannels * inChannels
    let half = Float8(repeating: 0.5)
    func gt(_ h0: Float8, _ h1: Float8, _ h2: Float8, _ h3: Float8) -> (Float8, Float8, Float8) {
      (h0 + half * (h1 + h2), half * (h1 - h2), half * (h1 + h2) + h3)
    }
    forEachFilterGroup(outChannels: outChannels, inChannels: inChannels) { k, c, lanes in
      let s = du + k * inChannels + c
      // Gᵀ dU: each of the 4 columns to 3 rows; then (Gᵀ dU) G: each row to 3 columns.
      func column(_ j: Int) -> (Float8, Float8, Float8) {
        gt(
          load8(s + j * ld, lanes: lanes), load8(s + (4 + j) * ld, lanes: lanes),
          load8(s + (8 + j) * ld, lanes: lanes), load8(s + (12 + j) * ld, lanes: lanes))
      }
      let q0 = column(0)
      let q1 = column(1)
      let q2 = column(2)
      let q3 = column(3)
      storeFilterTaps(
        gt(q0.0, q1.0, q2.0, q3.0), gt(q0.1, q1.1, q2.1, q3.1), gt(q0.2, q1.2, q2.2, q3.2),
        dw + (k * inChannels + c) * 9, lanes: lanes)
    }
  }

  /// Tap `e` of up to eight consecutive 3x3 filters at `f` (every ninth float), one per lane.
  @inline(__always)
  static func filterTap(_ f: UnsafePointer<Float>, _ e: Int, lanes: Int) -> Float8 {
    var v = Float8()
    for l in 0..<lanes { v[l] = f[l * 9 + e] }
    return v
  }

  /// Writes the taps of up to eight filters back to `[c][3][3]`, row by row of the filter
  /// (`row0` holds taps 0-2): lane `l` of tap `e` is filter `l`'s float `e`.
  @inline(__always)
  static func storeFilterTaps(
    _ row0: (Float8, Float8, Float8), _ row1: (Float8, Float8, Float8),
    _ row2: (Float8, Float8, Float8), _ d: UnsafeMutablePointer<Float>, lanes: Int
  ) {
    withUnsafeTemporaryAllocation(of: Float8.self, capacity: 9) { taps in
      (taps[0], taps[1], taps[2]) = row0
      (taps[3], taps[4], taps[5]) = row1
      (taps[6], taps[7], taps[8]) = row2
      for l in 0..<lanes {
        for e in 0..<9 { d[l * 9 + e] = taps[e][l] }
      }
    }
  }

  /// Calls `body(k, c, lanes)` for every output channel `k` and every run of up to eight input
  /// channels from `c` (`lanes` of them), output channels shared between the workers: the frame
  /// of the filter transforms, which handle eight filters per vector.
  @inline(__always)
  static func forEachFilterGroup(
    outChannels: Int, inChannels: Int, _ body: (_ k: Int, _ c: Int, _ lanes: Int) -> Void
  ) {
    Parallel.forRanges(outChannels, minimumChunk: max(1, 4096 / inChannels)) { range in
      for k in range {
        var c = 0
        while c < inChannels {
          body(k, c, min(8, inChannels - c))
          c += 8
        }
      }
    }
  }
}
