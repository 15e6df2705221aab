#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The sizes of one 2-D convolution over NCHW float32 images, with PyTorch's output size:
/// `out = (in + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1`.
public struct ConvGeometry: Equatable, Sendable, CustomStringConvertible {
  public var batch: Int
  public var inChannels: Int
  public var height: Int
  public var width: Int
  public var outChannels: Int
  public var kernelHeight: Int
  public var kernelWidth: Int
  public var stride: Int
  public var padding: Int
  public var dilation: Int
  public var groups: Int

  /// A geometry; the caller has checked that the sizes fit (the tensor op throws when they do
  /// not), so a violation here is a programming error.
  public init(
    batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelHeight: Int,
    kernelWidth: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1
  ) {
    self.batch = batch
    self.inChannels = inChannels
    self.height = height
    self.width = width
    self.outChannels = outChannels
    self.kernelHeight = kernelHeight
    self.kernelWidth = kernelWidth
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
    self.groups = groups
    precondition(
      stride >= 1 && dilation >= 1 && padding >= 0 && groups >= 1
        && inChannels % groups == 0 && outChannels % groups == 0
        && height + 2 * padding >= dilation * (kernelHeight - 1) + 1
        && width + 2 * padding >= dilation * (kernelWidth - 1) + 1,
      "invalid convolution geometry \(self)")
  }

  public var outHeight: Int {
    (height + 2 * padding - dilation * (kernelHeight - 1) - 1) / stride + 1
  }
  public var outWidth: Int { (width + 2 * padding - dilation * (kernelWidth - 1) - 1) / stride + 1 }
  /// Input channels seen by one output channel.
  public var inChannelsPerGroup: Int { inChannels / groups }
  public var outChannelsPerGroup: Int { outChannels / groups }
  /// Rows of the column matrix of one group: the length of one output's dot product.
  public var patchSize: Int { inChannelsPerGroup * kernelHeight * kernelWidth }
  /// A 1x1 convolution that reads every input pixel once: a plain matrix product per image.
  public var isPointwise: Bool {
    kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0
  }
  /// One filter per channel (`groups == inChannels == outChannels`), run by ``Depthwise``.
  public var isDepthwise: Bool { groups == inChannels && groups == outChannels && groups > 1 }
  /// Multiply-adds of the forward pass (FLOPs are twice this).
  public var multiplyAdds: Int { batch * outChannels * outHeight * outWidth * patchSize }

  public var description: String {
    "conv2d(x [\(batch), \(inChannels), \(height), \(width)], weight [\(outChannels), "
      + "\(inChannelsPerGroup), \(kernelHeight), \(kernelWidth)], stride \(stride), padding "
      + "\(padding), dilation \(dilation), groups \(groups))"
  }
}

/// 2-D convolution over NCHW float32 images, forward and backward.
///
/// Six paths, chosen from the geometry:
/// - depthwise (``ConvGeometry/isDepthwise``): a direct SIMD kernel, see ``Depthwise``;
/// - 3x3 stride 1 with enough channels (``WinogradKernel/applies(_:)``, unless ``usesWinograd`` is
///   off): Winograd's F(4x4, 3x3) or F(2x2, 3x3) (``WinogradKernel/tileSize(_:)``), 4x or 2.25x
///   fewer FLOPs than the matrix product of the unfolded input;
/// - 1x1 stride 1 without padding on smaller images, with channel counts that are multiples of
///   8 up to 256 (``PointwiseKernel/applies(_:)``): register-blocked products straight on the
///   planes, see ``PointwiseKernel``;
/// - 1x1 on 1x1 images (``runsOnPixels(_:)``, meta-ACON's generator): one matrix product of the
///   `[N, C]` rows per pass;
/// - 1x1 stride 1 without padding on images of ``pointwiseDirectColumns`` pixels or more: one
///   matrix product per image and group, straight from the input (no copy);
/// - everything else: ``Im2col`` then one matrix product per group for a block of images.
///   Small images are unfolded side by side so that each product has at least
///   ``targetColumns`` columns: OpenBLAS runs a `192 x 49` product at a quarter of its speed on a
///   `192 x 1568` one, and the scatter this costs moves far fewer bytes than the product reads.
///
/// The Swift loops (unfold, fold, scatter) and the products (``BLAS``) run on ``Parallel``.
public enum ConvolutionKernel {
  /// Runs the layers that ``WinogradKernel/applies(_:)`` to through ``Winograd`` (default); off, they
  /// unfold like every other layer (rounding then follows the direct sum more closely).
  /// ``KernelOptions/usesWinograd``.
  public static var usesWinograd: Bool { KernelOptions.current.usesWinograd }

  /// Whether `g` runs through ``Winograd``.
  public static func runsWinograd(_ g: ConvGeometry) -> Bool {
    usesWinograd && WinogradKernel.applies(g)
  }

  /// Matrix products of 1x1 layers aim for at least this many columns (images side by side;
  /// ``KernelOptions/pointwiseTargetColumns``).
  public static var targetColumns: Int { KernelOptions.current.pointwiseTargetColumns }
  /// The same for layers with larger kernels (``KernelOptions/unfoldedTargetColumns``).
  public static var unfoldedTargetColumns: Int { KernelOptions.current.unfoldedTargetColumns }
  /// Cap on the floats of one column matrix block (``KernelOptions/maximumColumnFloats``).
  public static var maximumColumnFloats: Int { KernelOptions.current.maximumColumnFloats }
  /// 1x1 layers with at least this many output positions run one product per image
  /// (``KernelOptions/pointwiseDirectColumns``).
  public static var pointwiseDirectColumns: Int { KernelOptions.current.pointwiseDirectColumns }

  /// How many images share one matrix product.
  public static func imagesPerProduct(_ g: ConvGeometry) -> Int {
    let spatial = g.outHeight * g.outWidth
    let target = g.isPointwise ? targetColumns : unfoldedTargetColumns
    if spatial >= target || (g.isPointwise && spatial >= pointwiseDirectColumns) {
      return 1
    }
    let wanted = (target + spatial - 1) / spatial
    let fitting = max(1, maximumColumnFloats / max(1, g.patchSize * spatial))
    return max(1, min(g.batch, wanted, fitting))
  }

  /// Whether `g` is a 1x1 layer on 1x1 images (meta-ACON's switching-factor generator, on the
  /// pooled means): its input and output are `[N, C]` matrices as they lie, so each pass is one
  /// matrix product of them and the weight, with no image copied. (Through the general path, the
  /// images were laid side by side and scattered back: a meta-ACON layer's two generator layers
  /// cost 40 µs more a step at batch 32.)
  public static func runsOnPixels(_ g: ConvGeometry) -> Bool {
    g.isPointwise && g.groups == 1 && g.height == 1 && g.width == 1
  }

  /// Floats of scratch memory ``forward(_:input:weight:bias:output:workspace:)`` needs.
  public static func forwardWorkspaceCount(_ g: ConvGeometry) -> Int {
    if g.isDepthwise || PointwiseKernel.applies(g) || StemKernel.applies(g) || runsOnPixels(g) {
      return 0
    }
    if runsWinograd(g) { return WinogradKernel.forwardWorkspaceCount(g) }
    return generalWorkspaceCount(g)
  }

  /// The column matrix and staging of the general path's products.
  static func generalWorkspaceCount(_ g: ConvGeometry) -> Int {
    let images = imagesPerProduct(g)
    let ld = leadingDimensionBound(images: images, spatial: g.outHeight * g.outWidth)
    let col = g.isPointwise && images == 1 ? 0 : g.patchSize * ld
    let staging = images > 1 ? g.outChannelsPerGroup * ld : 0
    return col + staging
  }

  /// The row stride of a column matrix or staging of `columns` columns. A stride of a multiple
  /// of 256 floats puts the rows that a matrix product reads together into the same few L1 sets:
  /// with 16 images of 4x4 side by side (2048 columns) oneDNN's `dy x^T` product for the weight
  /// gradient of a 96 x 96 layer ran at 45 GFLOP/s, with 16 floats more per row at 94.
  package static func leadingDimension(_ columns: Int) -> Int {
    columns % 256 == 0 ? columns + 16 : columns
  }

  /// The largest ``leadingDimension(_:)`` of the products of up to `images` images of `spatial`
  /// positions (the last product of a batch may hold fewer).
  static func leadingDimensionBound(images: Int, spatial: Int) -> Int {
    (1...max(1, images)).reduce(0) { max($0, leadingDimension($1 * spatial)) }
  }

  /// Floats of scratch memory ``backward(_:input:weight:outputGrad:inputGrad:weightGrad:biasGrad:workspace:)``
  /// needs.
  public static func backwardWorkspaceCount(_ g: ConvGeometry) -> Int {
    if runsOnPixels(g) { return 0 }
    if PointwiseKernel.applies(g) {
      // Wider layers' weight gradient still runs as one long product over the images.
      return PointwiseKernel.computesWeightGradient(g) ? 0 : generalWorkspaceCount(g)
    }
    if runsWinograd(g) { return WinogradKernel.backwardWorkspaceCount(g) }
    // The general path's products (a stem's forward needs none, its backward unfolds).
    let general = StemKernel.applies(g) ? generalWorkspaceCount(g) : forwardWorkspaceCount(g)
    let chunks = weightOnlyChunks(g)
    if chunks > 1 {
      return max(
        general,
        byImagesColumnFloats(g, chunks: chunks) + (chunks - 1) * g.outChannels * g.patchSize)
    }
    return general
  }

  /// How many workers share the weight gradient of a stem-like layer or of a small 1x1 layer
  /// read straight from its input (see
  /// ``weightGradientByImages(_:input:outputGrad:weightGrad:workspace:chunks:)``); 1 when the
  /// layer does not qualify.
  static func weightOnlyChunks(_ g: ConvGeometry) -> Int {
    let stemLike =
      g.groups == 1 && !g.isDepthwise && !runsWinograd(g) && !g.isPointwise && g.patchSize <= 160
      && imagesPerProduct(g) == 1
    // A 1x1 layer with one product per image and at most 96 x 96 weights: each image's
    // `[cout, spatial] x [spatial, cin]` product has a result too small to cut into panels (below
    // 32 columns not at all: the whole weight gradient ran on one thread).
    let smallPointwise =
      g.groups == 1 && g.isPointwise && imagesPerProduct(g) == 1
      && g.outChannels * g.inChannels <= 96 * 96
    return stemLike || smallPointwise ? min(Parallel.workers, g.batch) : 1
  }

  /// Floats of the per-worker column matrices of
  /// ``weightGradientByImages(_:input:outputGrad:weightGrad:workspace:chunks:)`` (none for 1x1
  /// layers, whose input is its own column matrix).
  static func byImagesColumnFloats(_ g: ConvGeometry, chunks: Int) -> Int {
    g.isPointwise ? 0 : chunks * g.patchSize * weightGradientOutputRows(g) * g.outWidth
  }

  /// `y = conv(x, w) + b`.
  ///
  /// - Parameters:
  ///   - x: `[batch, inChannels, height, width]`.
  ///   - weight: `[outChannels, inChannels / groups, kernelHeight, kernelWidth]`.
  ///   - bias: `[outChannels]`, or nil.
  ///   - y: `[batch, outChannels, outHeight, outWidth]`, overwritten.
  ///   - workspace: at least ``forwardWorkspaceCount(_:)`` floats.
  public static func forward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>
  ) {
    if g.isDepthwise {
      DepthwiseKernel.forward(g, input: x, weight: weight, bias: bias, output: y)
      return
    }
    if PointwiseKernel.applies(g) {
      PointwiseKernel.forward(g, input: x, weight: weight, bias: bias, output: y)
      return
    }
    if runsOnPixels(g) {
      // Y = X W^T (+ b in every row): [N, cin] x [cin, cout].
      if let bias {
        for n in 0..<g.batch { (y + n * g.outChannels).update(from: bias, count: g.outChannels) }
      }
      BLAS.sgemm(
        transposeA: false, transposeB: true, m: g.batch, n: g.outChannels, k: g.inChannels,
        a: x, lda: g.inChannels, b: weight, ldb: g.inChannels, beta: bias == nil ? 0 : 1, c: y,
        ldc: g.outChannels)
      return
    }
    if StemKernel.applies(g) {
      StemKernel.forward(g, input: x, weight: weight, bias: bias, output: y)
      return
    }
    if runsWinograd(g) {
      WinogradKernel.forward(
        g, input: x, weight: weight, bias: bias, output: y, workspace: workspace)
      return
    }
    let spatial = g.outHeight * g.outWidth
    let (coutG, k) = (g.outChannelsPerGroup, g.patchSize)
    forEachProduct(g, weight: weight, workspace: workspace) { p in
      let (n0, count, columns, group, wg, staging, ld) = (
        p.firstImage, p.count, p.columns, p.group, p.weight, p.staging, p.ld
      )
      let b = p.columnMatrix(of: x)
      if count == 1 {
        // The product's rows are this group's output planes of one image: write them in place.
        let out = y + (n0 * g.outChannels + group * coutG) * spatial
        if let bias {
          let bg = bias + group * coutG
          Parallel.forRanges(coutG, minimumChunk: max(1, 16384 / spatial)) { rows in
            for m in rows { (out + m * spatial).update(repeating: bg[m], count: spatial) }
          }
        }
        BLAS.sgemm(
          transposeA: false, transposeB: false, m: coutG, n: spatial, k: k, a: wg, lda: k,
          b: b, ldb: ld, beta: bias == nil ? 0 : 1, c: out, ldc: spatial)
      } else {
        BLAS.sgemm(
          transposeA: false, transposeB: false, m: coutG, n: columns, k: k, a: wg, lda: k,
          b: b, ldb: ld, c: staging, ldc: ld)
        scatter(
          staging, ld: ld, images: count, rows: coutG, spatial: spatial,
          into: y + (n0 * g.outChannels + group * coutG) * spatial,
          imageStride: g.outChannels * spatial, bias: bias.map { $0 + group * coutG })
      }
    }
  }

  /// One matrix product of a convolution: `count` images from `firstImage` side by side, one
  /// group; with the scratch buffers carved from the workspace.
  struct Product {
    let geometry: ConvGeometry
    let firstImage: Int, count: Int, group: Int
    /// `count * outHeight * outWidth`.
    let columns: Int
    /// The group's weights, `[outChannelsPerGroup, patchSize]`.
    let weight: UnsafePointer<Float>
    /// 1x1 stride-1 layers, one image per product: the input is its own column matrix.
    let direct: Bool
    /// The column matrix, `[patchSize, columns]` with rows `ld` apart (also dcol in backward).
    let col: UnsafeMutablePointer<Float>
    /// `[outChannelsPerGroup, columns]` with rows `ld` apart, for batched products.
    let staging: UnsafeMutablePointer<Float>
    /// The row stride of ``columnMatrix(of:)`` and of `staging`: `columns` when direct, else
    /// ``ConvolutionKernel/leadingDimension(_:)``.
    var ld: Int { direct ? columns : ConvolutionKernel.leadingDimension(columns) }

    /// This group's input planes of the first image, in `x`.
    func input(_ x: UnsafePointer<Float>) -> UnsafePointer<Float> {
      x + (firstImage * geometry.inChannels + group * geometry.inChannelsPerGroup) * geometry.height
        * geometry.width
    }

    /// The column matrix of these images: `x` itself when direct, else unfolded into `col`.
    func columnMatrix(of x: UnsafePointer<Float>) -> UnsafePointer<Float> {
      if direct { return input(x) }
      Im2colKernel.unfold(
        input(x), imageStride: geometry.inChannels * geometry.height * geometry.width,
        images: count,
        channels: geometry.inChannelsPerGroup, geometry: geometry, col: col, ldc: ld)
      return UnsafePointer(col)
    }
  }

  /// Calls `body` for every product of the layer, images outer and groups inner.
  static func forEachProduct(
    _ g: ConvGeometry, weight: UnsafePointer<Float>, workspace: UnsafeMutablePointer<Float>,
    _ body: (Product) -> Void
  ) {
    let spatial = g.outHeight * g.outWidth
    let images = imagesPerProduct(g)
    let direct = g.isPointwise && images == 1
    let staging =
      workspace
      + (direct ? 0 : g.patchSize * leadingDimensionBound(images: images, spatial: spatial))
    var n0 = 0
    while n0 < g.batch {
      let count = min(images, g.batch - n0)
      for group in 0..<g.groups {
        body(
          Product(
            geometry: g, firstImage: n0, count: count, group: group, columns: count * spatial,
            weight: weight + group * g.outChannelsPerGroup * g.patchSize, direct: direct,
            col: workspace, staging: staging))
      }
      n0 += count
    }
  }

  /// Whether ``backward(_:input:weight:outputGrad:inputGrad:weightGrad:biasGrad:workspace:accumulatingInputGrad:)``
  /// can add `g`'s input gradient to a gradient already there (the matrix-product paths: the
  /// product's `beta` or the fold's sums), saving the separate add where a layer's input also
  /// feeds another op (a residual block's input, ResNet's first 1x1 convolution of each block).
  public static func accumulatesInputGradient(_ g: ConvGeometry) -> Bool {
    !PointwiseKernel.applies(g) && !runsWinograd(g) && !g.isDepthwise
  }

  /// Gradients of `y = conv(x, w) + b` given `dy`; each non-nil output is overwritten (the
  /// input gradient added to, with `accumulatingInputGrad`).
  ///
  /// - Parameters:
  ///   - x: the forward input (needed for `weightGrad` only).
  ///   - weight: the forward weight (needed for `inputGrad` only).
  ///   - dy: `[batch, outChannels, outHeight, outWidth]`.
  ///   - inputGrad: `[batch, inChannels, height, width]`, or nil.
  ///   - weightGrad: same shape as the weight, or nil.
  ///   - biasGrad: `[outChannels]`, or nil.
  ///   - workspace: at least ``backwardWorkspaceCount(_:)`` floats.
  ///   - accumulatingInputGrad: add the input gradient to what `inputGrad` holds instead of
  ///     overwriting it; only where ``accumulatesInputGradient(_:)``.
  public static func backward(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    outputGrad dy: UnsafePointer<Float>, inputGrad dx: UnsafeMutablePointer<Float>?,
    weightGrad dw: UnsafeMutablePointer<Float>?, biasGrad db: UnsafeMutablePointer<Float>?,
    workspace: UnsafeMutablePointer<Float>, accumulatingInputGrad: Bool = false
  ) {
    precondition(
      !accumulatingInputGrad || accumulatesInputGradient(g),
      "ConvolutionKernel.backward: \(g) cannot add its input gradient in place")
    let spatial = g.outHeight * g.outWidth
    if let db { biasGradient(dy, batch: g.batch, channels: g.outChannels, spatial: spatial, db) }
    if dx == nil && dw == nil { return }
    if runsOnPixels(g) {
      // dX = dY W: [N, cout] x [cout, cin]; dW = dY^T X: [cout, N] x [N, cin].
      if let dx {
        BLAS.sgemm(
          transposeA: false, transposeB: false, m: g.batch, n: g.inChannels, k: g.outChannels,
          a: dy, lda: g.outChannels, b: weight, ldb: g.inChannels,
          beta: accumulatingInputGrad ? 1 : 0, c: dx, ldc: g.inChannels)
      }
      if let dw {
        BLAS.sgemm(
          transposeA: true, transposeB: false, m: g.outChannels, n: g.inChannels, k: g.batch,
          a: dy, lda: g.outChannels, b: x, ldb: g.inChannels, c: dw, ldc: g.inChannels)
      }
      return
    }
    var dx = dx
    if PointwiseKernel.applies(g) {
      // dx straight on the planes; dw too for narrow layers, else through the general path
      // below (with dx done).
      if let inputGrad = dx {
        PointwiseKernel.inputGradient(g, weight: weight, outputGrad: dy, inputGrad: inputGrad)
        dx = nil
      }
      if let weightGrad = dw, PointwiseKernel.computesWeightGradient(g) {
        PointwiseKernel.weightGradient(g, input: x, outputGrad: dy, weightGrad: weightGrad)
        return
      }
      guard dw != nil else { return }
    }
    if runsWinograd(g) {
      WinogradKernel.backward(
        g, input: x, weight: weight, outputGrad: dy, inputGrad: dx, weightGrad: dw,
        workspace: workspace)
      return
    }
    var dw = dw
    let chunks = weightOnlyChunks(g)
    if let weightGrad = dw, chunks > 1 {
      // Also when dx is wanted, so that dw has the same bits whether or not dx is requested.
      weightGradientByImages(
        g, input: x, outputGrad: dy, weightGrad: weightGrad, workspace: workspace, chunks: chunks)
      if dx == nil { return }
      dw = nil
    }
    if g.isDepthwise {
      DepthwiseKernel.backward(
        g, input: x, weight: weight, outputGrad: dy, inputGrad: dx, weightGrad: dw)
      return
    }
    let plane = g.height * g.width
    let (cinG, coutG, k) = (g.inChannelsPerGroup, g.outChannelsPerGroup, g.patchSize)
    forEachProduct(g, weight: weight, workspace: workspace) { p in
      let (n0, count, columns, group, wg, direct, col, staging, ld) = (
        p.firstImage, p.count, p.columns, p.group, p.weight, p.direct, p.col, p.staging, p.ld
      )
      let dyBase = dy + (n0 * g.outChannels + group * coutG) * spatial
      // This group's output gradient as a `[coutG, columns]` matrix, rows `dyLd` apart.
      let (dyg, dyLd): (UnsafePointer<Float>, Int)
      if count == 1 {
        (dyg, dyLd) = (dyBase, spatial)
      } else {
        gather(
          dyBase, imageStride: g.outChannels * spatial, images: count, rows: coutG,
          spatial: spatial, into: staging, ld: ld)
        (dyg, dyLd) = (UnsafePointer(staging), ld)
      }
      if let dw {
        // dW_g += dY_g col^T, summed over the images.
        let b = p.columnMatrix(of: x)
        BLAS.sgemm(
          transposeA: false, transposeB: true, m: coutG, n: k, k: columns, a: dyg,
          lda: dyLd, b: b, ldb: ld, beta: n0 == 0 ? 0 : 1, c: dw + group * coutG * k,
          ldc: k)
      }
      if let dx {
        let dxg = dx + (n0 * g.inChannels + group * cinG) * plane
        if direct {
          BLAS.sgemm(
            transposeA: true, transposeB: false, m: cinG, n: spatial, k: coutG, a: wg, lda: k,
            b: dyg, ldb: dyLd, beta: accumulatingInputGrad ? 1 : 0, c: dxg, ldc: spatial)
        } else {
          // dcol = W_g^T dY_g (reusing the column buffer), then fold it into the input planes.
          BLAS.sgemm(
            transposeA: true, transposeB: false, m: k, n: columns, k: coutG, a: wg, lda: k,
            b: dyg, ldb: dyLd, c: col, ldc: ld)
          Im2colKernel.fold(
            col, ldc: ld, images: count, channels: cinG, geometry: g, dx: dxg,
            imageStride: g.inChannels * plane, accumulating: accumulatingInputGrad)
        }
      }
    }
  }

  /// The weight gradient alone of a layer with few input taps (a network's first convolution,
  /// whose input needs no gradient) or of a small 1x1 layer: `[cout, k] x [k, spatial]^T`
  /// products with a long inner dimension and a tiny result, too small to cut into panels for
  /// the workers (``BLAS``). Each worker instead takes a contiguous run of images with serial
  /// products, unfolds and multiplies them into its own partial sum, and the partials are added
  /// in worker order (deterministic).
  ///
  /// With 16-float vectors (``LongInnerProduct``) an unfolded layer's image is unfolded a run of
  /// output rows at a time (``weightGradientOutputRows(_:)``) into columns that stay in the
  /// core's cache for the product that reads them: a whole image's columns (1.35 MB for
  /// ShuffleNetV2's stem at 224, 7.4 MB for ResNet's) went out to the shared cache or memory
  /// between the two. The lane sums run on across an image's runs of rows and are summed
  /// across lanes once per image.
  static func weightGradientByImages(
    _ g: ConvGeometry, input x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
    weightGrad dw: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>, chunks: Int
  ) {
    let spatial = g.outHeight * g.outWidth
    let plane = g.height * g.width
    let (cout, k) = (g.outChannels, g.patchSize)
    let rowsPerPiece = weightGradientOutputRows(g)
    let pieceColumns = rowsPerPiece * g.outWidth
    let partials = workspace + byImagesColumnFloats(g, chunks: chunks)
    Parallel.forEach(chunks) { chunk in
      let col = workspace + chunk * k * pieceColumns
      let acc = chunk == 0 ? dw : partials + (chunk - 1) * cout * k
      let images = g.batch * chunk / chunks..<g.batch * (chunk + 1) / chunks
      if LongInnerProduct.applies(m: cout, n: k, k: g.isPointwise ? spatial : pieceColumns) {
        LongInnerProduct.withAccumulator(m: cout, n: k) { sums in
          for n in images {
            let image = x + n * g.inChannels * plane
            let gradient = dy + n * cout * spatial
            if n != images.lowerBound { sums.reset() }
            if g.isPointwise {
              sums.add(k: spatial, a: gradient, lda: spatial, b: image, ldb: spatial)
            } else {
              var y0 = 0
              while y0 < g.outHeight {
                let rows = y0..<min(g.outHeight, y0 + rowsPerPiece)
                let columns = rows.count * g.outWidth
                Im2colKernel.unfoldSerial(
                  image, channels: g.inChannels, geometry: g, outputRows: rows, col: col,
                  ldc: columns)
                sums.add(
                  k: columns, a: gradient + y0 * g.outWidth, lda: spatial, b: col, ldb: columns)
                y0 = rows.upperBound
              }
            }
            // Summed across lanes image by image: carried over a worker's run of images, each
            // lane's chain of products (784 an image for ShuffleNetV2's stem) and its rounding
            // grew with the run.
            sums.finish(into: acc, ldc: k, accumulating: n != images.lowerBound)
          }
        }
        return
      }
      for n in images {
        let image = x + n * g.inChannels * plane
        let columns: UnsafePointer<Float>
        if g.isPointwise {
          columns = image
        } else {
          Im2colKernel.unfoldSerial(
            image, channels: g.inChannels, geometry: g, col: col, ldc: spatial)
          columns = UnsafePointer(col)
        }
        BLAS.sgemm(
          transposeA: false, transposeB: true, m: cout, n: k, k: spatial,
          a: dy + n * cout * spatial, lda: spatial, b: columns, ldb: spatial,
          beta: n == images.lowerBound ? 0 : 1, c: acc, ldc: k, serial: true)
      }
    }
    for chunk in 1..<chunks {
      ElementwiseKernel.add(dw, partials + (chunk - 1) * cout * k, dw, count: cout * k)
    }
  }

  /// Output rows unfolded at a time by
  /// ``weightGradientByImages(_:input:outputGrad:weightGrad:workspace:chunks:)``: about
  /// ``LongInnerProduct``'s chunk of columns where it runs the products, else the whole image
  /// (a BLAS call per run of rows would cost more than the cache saves).
  static func weightGradientOutputRows(_ g: ConvGeometry) -> Int {
    if g.isPointwise { return g.outHeight }
    let rows = max(1, LongInnerProduct.chunk / max(1, g.outWidth))
    let piece = min(g.outHeight, rows)
    return LongInnerProduct.applies(m: g.outChannels, n: g.patchSize, k: piece * g.outWidth)
      ? piece : g.outHeight
  }

  /// `db[c] = sum over images and positions of dy[n, c]`: each channel's planes summed lane by
  /// lane over a few images at a time and then in Float64 (``LaneSums``), as the batch norm's
  /// statistics are (1x1 images: each channel's column in Float64). A horizontal sum and a
  /// Float64 add per plane, as before, took 2.3 ms of the Fashion-MNIST network's step (56
  /// biased layers, planes of 16-784 floats).
  public static func biasGradient(
    _ dy: UnsafePointer<Float>, batch: Int, channels: Int, spatial: Int,
    _ db: UnsafeMutablePointer<Float>
  ) {
    if spatial == 1 {
      // `[N, C]` rows (1x1 images: meta-ACON's generator): each channel's column summed in
      // Float64 image by image, the channels side by side.
      Parallel.forRanges(channels, minimumChunk: max(1, 65536 / max(1, batch))) { range in
        let totals = UnsafeMutablePointer<Double>.allocate(capacity: range.count)
        defer { totals.deallocate() }
        totals.initialize(repeating: 0, count: range.count)
        for n in 0..<batch {
          let row = dy + n * channels + range.lowerBound
          for k in 0..<range.count { totals[k] += Double(row[k]) }
        }
        for k in 0..<range.count { db[range.lowerBound + k] = Float(totals[k]) }
      }
      return
    }
    let stride = channels * spatial
    let end = dy + batch * stride
    Parallel.forRanges(channels, minimumChunk: max(1, 65536 / max(1, batch * spatial))) { range in
      for c in range {
        let base = dy + c * spatial
        var total = 0.0
        for rows in LaneSums.rowBlocks(batch, plane: spatial) {
          var lanes = WideFloat(repeating: 0)
          for n in rows {
            let row = BatchNormKernel.rowDeviations(
              base + n * stride, plane: spatial, mean: 0, end: end, squares: false)
            lanes += row.linear
            total += Double(row.restLinear)
          }
          total += LaneSums.reduced(lanes)
        }
        db[c] = Float(total)
      }
    }
  }

  /// Copies a `[rows, images * spatial]` product (rows `ld` apart) into `images` NCHW blocks of
  /// `rows` planes, adding `bias[row]`.
  static func scatter(
    _ src: UnsafePointer<Float>, ld: Int, images: Int, rows: Int, spatial: Int,
    into y: UnsafeMutablePointer<Float>, imageStride: Int, bias: UnsafePointer<Float>?
  ) {
    Parallel.forRanges(images * rows, minimumChunk: max(1, 16384 / spatial)) { range in
      for item in range {
        let b = item / rows
        let m = item % rows
        let s = src + m * ld + b * spatial
        let d = y + b * imageStride + m * spatial
        if let bias {
          let v = Float8(repeating: bias[m])
          forEachVector(spatial) { i, lanes in
            store8(load8(s + i, lanes: lanes) + v, d + i, lanes: lanes)
          }
        } else {
          copyShortRow(from: s, to: d, count: spatial)
        }
      }
    }
  }

  /// The inverse of ``scatter(_:ld:images:rows:spatial:into:imageStride:bias:)`` without bias:
  /// lays `images` NCHW blocks of `rows` planes side by side as one `[rows, images * spatial]`
  /// matrix whose rows are `ld` apart.
  static func gather(
    _ src: UnsafePointer<Float>, imageStride: Int, images: Int, rows: Int, spatial: Int,
    into dst: UnsafeMutablePointer<Float>, ld: Int
  ) {
    Parallel.forRanges(images * rows, minimumChunk: max(1, 16384 / spatial)) { range in
      for item in range {
        let b = item / rows
        let m = item % rows
        copyShortRow(
          from: src + b * imageStride + m * spatial, to: dst + m * ld + b * spatial,
          count: spatial)
      }
    }
  }
}
