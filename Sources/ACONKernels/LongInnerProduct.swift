/// `C = A Bᵀ` (or `C += A Bᵀ`) for a small result over a long inner dimension: `A` is
/// `[m, k]`, `B` `[n, k]`, rows contiguous.
///
/// The weight gradient of a stem-like layer, one image at a time, is such a product: `dy colᵀ`,
/// 24 x 27 over 12544 positions for ShuffleNetV2's stem, 64 x 147 for ResNet's. oneDNN packs
/// both operands whole for it, and ran these at 40-50 and 71-88 GFLOP/s on one Zen 5 core.
/// Here the result is cut into 4 x 4 blocks, each accumulated in sixteen vectors of lane sums
/// over a chunk of the inner dimension (the chunk's rows of `A` and `B` stay in the core's L2
/// cache for every block); a block loads eight vectors per sixteen multiply-adds. The lane sums
/// carry from chunk to chunk in a small scratch and are summed across lanes once at the end.
/// Edge blocks repeat the last row or column and drop what it computes. The order of every sum
/// is fixed by the shape, so results are the same run to run.
///
/// Used where vectors are 16 floats wide (``applies(m:n:k:)``): with 8-float vectors the sixteen
/// accumulators and their operands do not fit the 16 registers.
public enum LongInnerProduct {
  /// Floats of the inner dimension per pass over the blocks (a multiple of every vector width).
  static let chunk = 1024

  /// Whether `m x n` over `k` runs here rather than through ``BLAS``: 16-float vectors, an inner
  /// dimension of at least 256 and a result of at most 64 x 160.
  public static func applies(m: Int, n: Int, k: Int) -> Bool {
    WideFloat.scalarCount == 16 && k >= 256 && m >= 1 && n >= 1 && m * n <= 64 * 160
  }

  /// `c[i * ldc + j] = sum over p of a[i * lda + p] * b[j * ldb + p]`, added to what `c` holds
  /// when `accumulating`.
  public static func multiply(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
    ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulating: Bool
  ) {
    withAccumulator(m: m, n: n) { sums in
      sums.add(k: k, a: a, lda: lda, b: b, ldb: ldb)
      sums.finish(into: c, ldc: ldc, accumulating: accumulating)
    }
  }

  /// Calls `body` with a zeroed ``Accumulator`` for an `m x n` result (at most 40 KB of the stack).
  static func withAccumulator<R>(m: Int, n: Int, _ body: (Accumulator) throws -> R) rethrows -> R {
    let count = Accumulator.vectorCount(m: m, n: n)
    return try withUnsafeTemporaryAllocation(of: WideFloat.self, capacity: count) { buffer in
      let vectors = buffer.baseAddress!
      vectors.initialize(repeating: WideFloat(repeating: 0), count: count)
      return try body(Accumulator(m: m, n: n, vectors: vectors))
    }
  }

  /// The lane sums of an `m x n` product being accumulated over its inner dimension in pieces
  /// (``add(k:a:lda:b:ldb:)`` once per piece), summed across lanes once by
  /// ``finish(into:ldc:accumulating:)``: a caller that produces the operands piece by piece
  /// (the columns of an unfolded image, a run of rows at a time) pays for one horizontal sum
  /// per result element, not one per piece.
  struct Accumulator {
    let m: Int
    let n: Int
    /// Sixteen vectors per 4 x 4 block of the result, blocks row by row.
    let vectors: UnsafeMutablePointer<WideFloat>

    static func vectorCount(m: Int, n: Int) -> Int { ((m + 3) / 4) * ((n + 3) / 4) * 16 }

    /// Sets every lane sum to zero, for the next product.
    func reset() {
      vectors.update(repeating: WideFloat(repeating: 0), count: Self.vectorCount(m: m, n: n))
    }

    /// Adds `a[i * lda + p] * b[j * ldb + p]` over `p` in `0..<k` to the lane sums of `(i, j)`.
    func add(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int) {
      let lanes = WideFloat.scalarCount
      let (rowBlocks, columnBlocks) = ((m + 3) / 4, (n + 3) / 4)
      var start = 0
      while start < k {
        let end = min(k, start + chunk)
        let whole = start + (end - start) / lanes * lanes
        for bi in 0..<rowBlocks {
          // Rows past the end repeat the last one; their sums are never read.
          let a0 = a + min(4 * bi, m - 1) * lda
          let a1 = a + min(4 * bi + 1, m - 1) * lda
          let a2 = a + min(4 * bi + 2, m - 1) * lda
          let a3 = a + min(4 * bi + 3, m - 1) * lda
          for bj in 0..<columnBlocks {
            let b0 = b + min(4 * bj, n - 1) * ldb
            let b1 = b + min(4 * bj + 1, n - 1) * ldb
            let b2 = b + min(4 * bj + 2, n - 1) * ldb
            let b3 = b + min(4 * bj + 3, n - 1) * ldb
            let slot = vectors + (bi * columnBlocks + bj) * 16
            var sums = BlockSums(loading: slot)
            var p = start
            while p < whole {
              sums.accumulate(
                loadWide(a0 + p), loadWide(a1 + p), loadWide(a2 + p), loadWide(a3 + p),
                loadWide(b0 + p), loadWide(b1 + p), loadWide(b2 + p), loadWide(b3 + p))
              p += lanes
            }
            if p < end {
              // The last, partial vector of the inner dimension, zero past its end.
              let r = end - p
              sums.accumulate(
                PointwiseKernel.loadWidePartial(a0 + p, r),
                PointwiseKernel.loadWidePartial(a1 + p, r),
                PointwiseKernel.loadWidePartial(a2 + p, r),
                PointwiseKernel.loadWidePartial(a3 + p, r),
                PointwiseKernel.loadWidePartial(b0 + p, r),
                PointwiseKernel.loadWidePartial(b1 + p, r),
                PointwiseKernel.loadWidePartial(b2 + p, r),
                PointwiseKernel.loadWidePartial(b3 + p, r))
            }
            sums.store(to: slot)
          }
        }
        start = end
      }
    }

    /// Writes (or with `accumulating` adds) each element's sum across its lanes to
    /// `c[i * ldc + j]`.
    func finish(into c: UnsafeMutablePointer<Float>, ldc: Int, accumulating: Bool) {
      let columnBlocks = (n + 3) / 4
      for i in 0..<m {
        for j in 0..<n {
          let sum = horizontalSum(
            vectors[((i / 4) * columnBlocks + j / 4) * 16 + (i % 4) * 4 + j % 4])
          c[i * ldc + j] = accumulating ? c[i * ldc + j] + sum : sum
        }
      }
    }
  }
}

/// A 4 x 4 block of a small product in sixteen vectors of lane sums: `s[r][c] += a[r] * b[c]`
/// lane by lane, one vector of the inner dimension at a time. Kept in registers by the loops of
/// ``LongInnerProduct`` and ``PointwiseKernel/weightGradient(_:input:outputGrad:weightGrad:)``,
/// and in a scratch of sixteen vectors between their passes.
struct BlockSums {
  var s00, s01, s02, s03, s10, s11, s12, s13: WideFloat
  var s20, s21, s22, s23, s30, s31, s32, s33: WideFloat

  /// The sums stored at `p` (sixteen vectors, row by row).
  @inline(__always)
  init(loading p: UnsafePointer<WideFloat>) {
    (s00, s01, s02, s03) = (p[0], p[1], p[2], p[3])
    (s10, s11, s12, s13) = (p[4], p[5], p[6], p[7])
    (s20, s21, s22, s23) = (p[8], p[9], p[10], p[11])
    (s30, s31, s32, s33) = (p[12], p[13], p[14], p[15])
  }

  @inline(__always)
  func store(to p: UnsafeMutablePointer<WideFloat>) {
    (p[0], p[1], p[2], p[3]) = (s00, s01, s02, s03)
    (p[4], p[5], p[6], p[7]) = (s10, s11, s12, s13)
    (p[8], p[9], p[10], p[11]) = (s20, s21, s22, s23)
    (p[12], p[13], p[14], p[15]) = (s30, s31, s32, s33)
  }

  /// Adds the products of the vectors at `a`, `a + stride`, `a + 2 stride`, `a + 3 stride` (the
  /// block's four rows) and the same four of `b` (its columns): operands laid out at a fixed
  /// distance, such as four channel planes.
  @inline(__always)
  mutating func accumulate(
    rows a: UnsafePointer<Float>, columns b: UnsafePointer<Float>, stride: Int
  ) {
    accumulate(
      loadWide(a), loadWide(a + stride), loadWide(a + 2 * stride), loadWide(a + 3 * stride),
      loadWide(b), loadWide(b + stride), loadWide(b + 2 * stride), loadWide(b + 3 * stride))
  }

  /// Adds the products of one vector of each of the block's four rows `a` and four columns `b`.
  @inline(__always)
  mutating func accumulate(
    _ a0: WideFloat, _ a1: WideFloat, _ a2: WideFloat, _ a3: WideFloat,
    _ b0: WideFloat, _ b1: WideFloat, _ b2: WideFloat, _ b3: WideFloat
  ) {
    s00 = s00.plusProduct(a0, b0)
    s01 = s01.plusProduct(a0, b1)
    s02 = s02.plusProduct(a0, b2)
    s03 = s03.plusProduct(a0, b3)
    s10 = s10.plusProduct(a1, b0)
    s11 = s11.plusProduct(a1, b1)
    s12 = s12.plusProduct(a1, b2)
    s13 = s13.plusProduct(a1, b3)
    s20 = s20.plusProduct(a2, b0)
    s21 = s21.plusProduct(a2, b1)
    s22 = s22.plusProduct(a2, b2)
    s23 = s23.plusProduct(a2, b3)
    s30 = s30.plusProduct(a3, b0)
    s31 = s31.plusProduct(a3, b1)
    s32 = s32.plusProduct(a3, b2)
    s33 = s33.plusProduct(a3, b3)
  }
}
