/// The transforms of Winograd's F(4x4, 3x3), at the interpolation points 0, 1, -1, 2, -2 and ∞
/// (Lavin and Gray's choice):
///
///     Bᵀ = [4  0 -5  0 1 0        G = [ 1/4     0     0        Aᵀ = [1 1  1 1  1 0
///           0 -4 -4  1 1 0             -1/6  -1/6  -1/6              0 1 -1 2 -2 0
///           0  4 -4 -1 1 0             -1/6   1/6  -1/6              0 1  1 4  4 0
///           0 -2 -1  2 1 0              1/24  1/12  1/6              0 1 -1 8 -8 1]
///           0  2 -1 -2 1 0              1/24 -1/12  1/6
///           0  4  0 -5 0 1]             0     0     1   ]
///
/// A 4x4 tile of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for its 6x6 input patch: 36 products
/// for 16 outputs (2.25 per output, against F(2x2, 3x3)'s 4 and the direct sum's 9). The block
/// loop, products and backward are ``WinogradKernel``'s; these are the tile's transforms, eight
/// tiles of a tile row per vector, the patches' columns `4t + j` split out of the input row by
/// ``loadDeinterleaved4(_:)``.
extension WinogradKernel {
  typealias Six = (Float8, Float8, Float8, Float8, Float8, Float8)
  typealias Four = (Float8, Float8, Float8, Float8)

  /// `Bᵀ d` for one 6-vector.
  @inline(__always)
  static func inputTransform4x4(
    _ d0: Float8, _ d1: Float8, _ d2: Float8, _ d3: Float8, _ d4: Float8, _ d5: Float8
  ) -> Six {
    let four = Float8(repeating: 4)
    let five = Float8(repeating: 5)
    let a = d4 - four * d2
    let b = d3 - four * d1
    let c = d4 - d2
    let e = (d3 - d1) + (d3 - d1)
    return (four * d0 - five * d2 + d4, a + b, a - b, c + e, c - e, four * d1 - five * d3 + d5)
  }

  /// `Aᵀ m` for one 6-vector.
  @inline(__always)
  static func outputTransform4x4(_ m: Six) -> Four {
    let a = m.1 + m.2
    let b = m.1 - m.2
    let c = m.3 + m.4
    let d = m.3 - m.4
    let two = Float8(repeating: 2)
    let four = Float8(repeating: 4)
    let eight = Float8(repeating: 8)
    return (m.0 + a + c, b + two * d, a + four * c, b + eight * d + m.5)
  }

  /// `A e`, the adjoint of ``outputTransform4x4(_:)``.
  @inline(__always)
  static func outputTransformAdjoint4x4(_ e: Four) -> Six {
    let p = e.0 + e.2
    let q = e.1 + e.3
    let r = e.0 + Float8(repeating: 4) * e.2
    let s = Float8(repeating: 2) * e.1 + Float8(repeating: 8) * e.3
    return (e.0, p + q, p - q, r + s, r - s, e.3)
  }

  /// `G g` for one 3-vector.
  @inline(__always)
  static func filterTransform4x4(_ a: Float8, _ b: Float8, _ c: Float8) -> Six {
    let sixth = Float8(repeating: 1 / 6)
    let s = a + c
    let t = Float8(repeating: 1 / 24) * a + sixth * c
    let u = Float8(repeating: 1 / 12) * b
    return (Float8(repeating: 0.25) * a, -sixth * (s + b), -sixth * (s - b), t + u, t - u, c)
  }

  /// `Gᵀ h`, the adjoint of ``filterTransform4x4(_:_:_:)``.
  @inline(__always)
  static func filterTransformAdjoint4x4(_ h: Six) -> (Float8, Float8, Float8) {
    let sixth = Float8(repeating: 1 / 6)
    let s = h.1 + h.2
    let d = h.1 - h.2
    let sum = h.3 + h.4
    let difference = h.3 - h.4
    return (
      Float8(repeating: 0.25) * h.0 - sixth * s + Float8(repeating: 1 / 24) * sum,
      Float8(repeating: 1 / 12) * difference - sixth * d,
      sixth * (sum - s) + h.5
    )
  }

  /// Stores column `j` of a transformed 6x6 tile (positions ξ = 6i + j), eight tiles at a time.
  @inline(__always)
  static func storeColumn4x4(_ column: Six, _ j: Int, _ o: UnsafeMutablePointer<Float>, _ ld: Int) {
    store8(column.0, o + j * ld)
    store8(column.1, o + (6 + j) * ld)
    store8(column.2, o + (12 + j) * ld)
    store8(column.3, o + (18 + j) * ld)
    store8(column.4, o + (24 + j) * ld)
    store8(column.5, o + (30 + j) * ld)
  }

  /// ``transformInput(_:_:firstRow:rows:channels:into:)`` for 4x4 tiles: `V[ξ] = (Bᵀ d B)[ξ]` into
  /// `[36][t.channels][channelStride(rows)]`.
  static func transformInput4x4(
    _ t: Tiling, _ x: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    into v: UnsafeMutablePointer<Float>
  ) {
    let ld = t.positionStride(t.channels, rows)
    // Each tile row's six input rows, zero-padded: scratch column j is input column j - p.
    forEachLoadedTileGroup(
      t, from: x, planeChannels: t.channels, height: t.height, width: t.width,
      shift: t.padding, count: 6, firstRow: firstRow, rows: rows, channels: channels, into: v
    ) { scratch, stride, o, tx in
      // Row i of eight patches, transformed: patch t's columns are 4t + (0 ..< 6).
      func patchRow(_ i: Int) -> Six {
        let line = scratch + i * stride + 4 * tx
        let a = loadDeinterleaved4(line)
        let b = loadDeinterleaved4(line + 4)
        return inputTransform4x4(a.0, a.1, a.2, a.3, b.0, b.1)
      }
      let e0 = patchRow(0)
      let e1 = patchRow(1)
      let e2 = patchRow(2)
      let e3 = patchRow(3)
      let e4 = patchRow(4)
      let e5 = patchRow(5)
      func put(_ j: Int, _ column: Six) { storeColumn4x4(column, j, o, ld) }
      put(0, inputTransform4x4(e0.0, e1.0, e2.0, e3.0, e4.0, e5.0))
      put(1, inputTransform4x4(e0.1, e1.1, e2.1, e3.1, e4.1, e5.1))
      put(2, inputTransform4x4(e0.2, e1.2, e2.2, e3.2, e4.2, e5.2))
      put(3, inputTransform4x4(e0.3, e1.3, e2.3, e3.3, e4.3, e5.3))
      put(4, inputTransform4x4(e0.4, e1.4, e2.4, e3.4, e4.4, e5.4))
      put(5, inputTransform4x4(e0.5, e1.5, e2.5, e3.5, e4.5, e5.5))
    }
  }

  /// ``transformOutput(_:_:firstRow:rows:channels:bias:into:)`` for 4x4 tiles: `Y = Aᵀ M A (+ bias)`.
  static func transformOutput4x4(
    _ t: Tiling, _ m: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
  ) {
    let ld = t.positionStride(t.outChannels, rows)
    forEachStoredTileGroup(
      t, from: m, firstRow: firstRow, rows: rows, channels: channels, bias: bias, into: y
    ) { s, b, scratch, stride, tx in
      func column(_ j: Int) -> Four {
        outputTransform4x4(
          (
            load8(s + j * ld), load8(s + (6 + j) * ld), load8(s + (12 + j) * ld),
            load8(s + (18 + j) * ld), load8(s + (24 + j) * ld), load8(s + (30 + j) * ld)
          ))
      }
      // Aᵀ M column by column, then (Aᵀ M) A row by row, each row's four columns interleaved.
      let c0 = column(0)
      let c1 = column(1)
      let c2 = column(2)
      let c3 = column(3)
      let c4 = column(4)
      let c5 = column(5)
      func put(_ i: Int, _ row: Four) {
        storeInterleaved4(
          row.0 + b, row.1 + b, row.2 + b, row.3 + b, scratch + i * stride + 4 * tx)
      }
      put(0, outputTransform4x4((c0.0, c1.0, c2.0, c3.0, c4.0, c5.0)))
      put(1, outputTransform4x4((c0.1, c1.1, c2.1, c3.1, c4.1, c5.1)))
      put(2, outputTransform4x4((c0.2, c1.2, c2.2, c3.2, c4.2, c5.2)))
      put(3, outputTransform4x4((c0.3, c1.3, c2.3, c3.3, c4.3, c5.3)))
    }
  }

  /// ``transformOutputGradient(_:_:firstRow:rows:channels:into:)`` for 4x4 tiles: `dM = A dY Aᵀ`.
  static func transformOutputGradient4x4(
    _ t: Tiling, _ dy: UnsafePointer<Float>, firstRow: Int, rows: Int, channels: Range<Int>,
    into dm: UnsafeMutablePointer<Float>
  ) {
    let ld = t.positionStride(t.outChannels, rows)
    // Each tile row's four output rows, zero past the output's edges.
    forEachLoadedTileGroup(
      t, from: dy, planeChannels: t.outChannels, height: t.outHeight, width: t.outWidth,
      shift: 0, count: 4, firstRow: firstRow, rows: rows, channels: channels, into: dm
    ) { scratch, stride, o, tx in
      // dY Aᵀ (rows), then A (dY Aᵀ) (columns).
      func row(_ i: Int) -> Six {
        outputTransformAdjoint4x4(loadDeinterleaved4(scratch + i * stride + 4 * tx))
      }
      let e0 = row(0)
      let e1 = row(1)
      let e2 = row(2)
      let e3 = row(3)
      func put(_ j: Int, _ column: Six) { storeColumn4x4(column, j, o, ld) }
      put(0, outputTransformAdjoint4x4((e0.0, e1.0, e2.0, e3.0)))
      put(1, outputTransformAdjoint4x4((e0.1, e1.1, e2.1, e3.1)))
      put(2, outputTransformAdjoint4x4((e0.2, e1.2, e2.2, e3.2)))
      put(3, outputTransformAdjoint4x4((e0.3, e1.3, e2.3, e3.3)))
      put(4, outputTransformAdjoint4x4((e0.4, e1.4, e2.4, e3.4)))
      put(5, outputTransformAdjoint4x4((e0.5, e1.5, e2.5, e3.5)))
    }
  }

  /// ``transformFilters(_:outChannels:inChannels:tile:rotated:into:)`` for 4x4 tiles:
  /// `U[ξ][k][c] = (G g Gᵀ)[ξ]`, `[36][outChannels][inChannels]`.
  static func transformFilters4x4(
    _ w: UnsafePointer<Float>, outChannels: Int, inChannels: Int, rotated: Bool,
    into u: UnsafeMutablePointer<Float>
  ) {
    let ld = outChannels * inChannels
    forEachFilterGroup(outChannels: outChannels, inChannels: inChannels) { k, c, lanes in
      let f = w + (k * inChannels + c) * 9
      func tap(_ e: Int) -> Float8 { filterTap(f, rotated ? 8 - e : e, lanes: lanes) }
      // G g: each filter column to 6 rows; then (G g) Gᵀ: each row to 6 columns.
      let c0 = filterTransform4x4(tap(0), tap(3), tap(6))
      let c1 = filterTransform4x4(tap(1), tap(4), tap(7))
      let c2 = filterTransform4x4(tap(2), tap(5), tap(8))
      let o = u + k * inChannels + c
      func put(_ i: Int, _ r: Six) {
        store8(r.0, o + (6 * i) * ld, lanes: lanes)
        store8(r.1, o + (6 * i + 1) * ld, lanes: lanes)
        store8(r.2, o + (6 * i + 2) * ld, lanes: lanes)
        store8(r.3, o + (6 * i + 3) * ld, lanes: lanes)
        store8(r.4, o + (6 * i + 4) * ld, lanes: lanes)
        store8(r.5, o + (6 * i + 5) * ld, lanes: lanes)
      }
      put(0, filterTransform4x4(c0.0, c1.0, c2.0))
      put(1, filterTransform4x4(c0.1, c1.1, c2.1))
      put(2, filterTransform4x4(c0.2, c1.2, c2.2))
      put(3, filterTransform4x4(c0.3, c1.3, c2.3))
      put(4, filterTransform4x4(c0.4, c1.4, c2.4))
      put(5, filterTransform4x4(c0.5, c1.5, c2.5))
    }
  }

  /// ``untransformFilterGradient(_:outChannels:inChannels:tile:into:)`` for 4x4 tiles:
  /// `dw[k][c] = Gᵀ dU[k][c] G`.
  static func untransformFilterGradient4x4(
    _ du: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
    into dw: UnsafeMutablePointer<Float>
  ) {
    let ld = outChannels * inChannels
    forEachFilterGroup(outChannels: outChannels, inChannels: inChannels) { k, c, lanes in
      let s = du + k * inChannels + c
      // Gᵀ dU: each of the 6 columns to 3 rows; then (Gᵀ dU) G: each row to 3 columns.
      func column(_ j: Int) -> (Float8, Float8, Float8) {
        filterTransformAdjoint4x4(
          (
            load8(s + j * ld, lanes: lanes), load8(s + (6 + j) * ld, lanes: lanes),
            load8(s + (12 + j) * ld, lanes: lanes), load8(s + (18 + j) * ld, lanes: lanes),
            load8(s + (24 + j) * ld, lanes: lanes), load8(s + (30 + j) * ld, lanes: lanes)
          ))
      }
      let q0 = column(0)
      let q1 = column(1)
      let q2 = column(2)
      let q3 = column(3)
      let q4 = column(4)
      let q5 = column(5)
      storeFilterTaps(
        filterTransformAdjoint4x4((q0.0, q1.0, q2.0, q3.0, q4.0, q5.0)),
        filterTransformAdjoint4x4((q0.1, q1.1, q2.1, q3.1, q4.1, q5.1)),
        filterTransformAdjoint4x4((q0.2, q1.2, q2.2, q3.2, q4.2, q5.2)),
        dw + (k * inChannels + c) * 9, lanes: lanes)
    }
  }
}
