/// Vectorised transcendental functions for the kernels.
///
/// The standard library's SIMD helpers (`clamped`, `pointwiseMin`) are generic calls that are
/// not inlined in hot loops, so clamping here uses masks (`replacing(with:where:)`).
public typealias Float8 = SIMD8<Float>

/// `e^x` for eight lanes: Cephes-style polynomial, relative error below 2e-7 on [-87, 88].
/// Inputs are clamped to that range, so the result is never Inf or NaN for finite input.
@inlinable @inline(__always)
public func fastExp(_ input: Float8) -> Float8 {
  var x = input.replacing(with: 88.0, where: input .> 88.0)
  x = x.replacing(with: -87.0, where: x .< -87.0)
  // n = round(x / ln 2), by the 1.5 * 2^23 rounding trick.
  let shifter = Float8(repeating: 12_582_912.0)
  // Fused multiply-adds throughout (`plusProduct`): half the instructions of mul + add.
  let t = shifter.plusProduct(x, Float8(repeating: 1.442_695_04))
  let n = t - shifter
  // r = x - n ln 2, in two parts for accuracy.
  var r = x.plusProduct(n, Float8(repeating: -0.693_359_375))
  r = r.plusProduct(n, Float8(repeating: 2.121_944_4e-4))
  var p = Float8(repeating: 1.398_199_95e-3).plusProduct(Float8(repeating: 1.987_569_15e-4), r)
  p = Float8(repeating: 8.333_451_9e-3).plusProduct(p, r)
  p = Float8(repeating: 4.166_579_59e-2).plusProduct(p, r)
  p = Float8(repeating: 1.666_666_55e-1).plusProduct(p, r)
  p = Float8(repeating: 5.000_000_12e-1).plusProduct(p, r)
  let r2 = r * r
  let y = (r + Float8(repeating: 1)).plusProduct(p, r2)
  // 2^n from the exponent bits; n lies in [-126, 127] after the clamp.
  let bits = unsafeBitCast(t, to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 0x4B40_0000)
  let scale = unsafeBitCast((bits &+ SIMD8<Int32>(repeating: 127)) &<< 23, to: Float8.self)
  return y * scale
}

/// The logistic sigmoid `1 / (1 + e^-x)` for eight lanes, accurate for every finite input:
/// ``fastExp(_:)`` clamps `-x` to [-87, 88], so `e^-x` is finite and the quotient lies in
/// [0, 1]. (Evaluating `e^-|x|` and choosing between `1 / (1 + e)` and `e / (1 + e)` by sign is
/// as accurate but takes five more instructions a vector: a sixth of the ACON's forward.)
@inlinable @inline(__always)
public func fastSigmoid(_ x: Float8) -> Float8 {
  let one = Float8(repeating: 1)
  return one / (one + fastExp(-x))
}

/// The widest float vector the kernels were compiled for: 16 lanes (one AVX-512 register)
/// when Package.swift selected AVX-512 (it then defines `ACON_VECTOR16` with the same choice that
/// sets ``InstructionSet/compiled``), else 8 (two SSE registers, or one AVX2 register). The ACON
/// plane loops run at this width: on AVX-512 machines their sigmoid is arithmetic-bound at 8 lanes.
///
/// ``WideLaneMask`` is the integer vector of the same width, for lane masks: every bit set in a
/// kept lane, none in a cleared one.
#if ACON_VECTOR16
  public typealias WideFloat = SIMD16<Float>
  public typealias WideLaneMask = SIMD16<Int32>
#else
  public typealias WideFloat = SIMD8<Float>
  public typealias WideLaneMask = SIMD8<Int32>
#endif

/// Whether a plane's last, partial vector may run past the plane (reading the floats after it
/// and writing them back unchanged): only when the planes after it in the same worker's run,
/// `following` of `plane` floats each, hold the whole vector's spill (up to a vector less one
/// float). Planes smaller than a vector (2x2, 1x1) need several planes after them.
@inlinable @inline(__always)
public func partialVectorFits(plane: Int, following: Int) -> Bool {
  following * plane >= WideFloat.scalarCount
}

/// Writes `value(i)` to `y[i..<i + width]` for every vector of a plane of `count` floats, and
/// the rest: with `mayOverrun` (``partialVectorFits(plane:following:)``) as one more vector whose
/// lanes past the plane keep what `y` held there, else float by float through `scalar(i)`,
/// which must compute what `value` computes in one lane (the same fused multiply-adds).
@inlinable @inline(__always)
public func writePlane(
  _ y: UnsafeMutablePointer<Float>, count: Int, mayOverrun: Bool,
  _ value: (Int) -> WideFloat, scalar: (Int) -> Float
) {
  let lanes = WideFloat.scalarCount
  var i = 0
  while i + lanes <= count {
    storeWide(value(i), y + i)
    i += lanes
  }
  if i < count && mayOverrun {
    storeWide(value(i), y + i, keeping: wideLaneMask(keepingFirst: count - i))
    return
  }
  while i < count {
    y[i] = scalar(i)
    i += 1
  }
}

/// Copies `count` floats from `src` to `dst` (not overlapping) with an inline vector loop: for
/// the short rows of small images (16 to 200 floats), where a `memmove` call per row cost more
/// than the copy.
@inlinable @inline(__always)
public func copyShortRow(
  from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int
) {
  var i = 0
  while i + WideFloat.scalarCount <= count {
    storeWide(loadWide(src + i), dst + i)
    i += WideFloat.scalarCount
  }
  if i + 8 <= count {
    store8(load8(src + i), dst + i)
    i += 8
  }
  while i < count {
    dst[i] = src[i]
    i += 1
  }
}

/// `v` with the lanes at and past `lanes` cleared (8 lanes; see ``wideLaneMask(keepingFirst:)``
/// for why this is integer arithmetic rather than a comparison).
@inlinable @inline(__always)
public func firstLanes(_ v: Float8, _ lanes: Int) -> Float8 {
  let index = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
  // All ones where index < lanes (the difference is negative), zero elsewhere.
  let keep = (index &- SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: min(lanes, 8)))) &>> 31
  return unsafeBitCast(unsafeBitCast(v, to: SIMD8<Int32>.self) & keep, to: Float8.self)
}

/// The mask of the first `lanes` lanes (every lane when `lanes` is at least the width).
///
/// Integer arithmetic on the lane numbers: a comparison (`.<`) grew the loops that use it enough
/// that the optimizer stopped inlining the sigmoid into them, and a comparison with a scalar
/// compiled to a loop over the lanes through the stack. Compute it outside a hot loop and pick
/// it there with `?:` (see ``ACONKernel``'s plane loops): computed inside, LLVM split the loads
/// it masks into pieces.
@inlinable @inline(__always)
public func wideLaneMask(keepingFirst lanes: Int) -> WideLaneMask {
  #if ACON_VECTOR16
    let index = WideLaneMask(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
  #else
    let index = WideLaneMask(0, 1, 2, 3, 4, 5, 6, 7)
  #endif
  let count = Int32(truncatingIfNeeded: min(lanes, WideFloat.scalarCount))
  // Negative (the sign bit, shifted into every bit) exactly where index < count.
  return (index &- WideLaneMask(repeating: count)) &>> 31
}

/// `v` where `mask` is set, zero elsewhere.
@inlinable @inline(__always)
public func masked(_ v: WideFloat, _ mask: WideLaneMask) -> WideFloat {
  unsafeBitCast(unsafeBitCast(v, to: WideLaneMask.self) & mask, to: WideFloat.self)
}

/// `a` where `mask` is set, `b` elsewhere.
@inlinable @inline(__always)
public func select(_ mask: WideLaneMask, _ a: WideFloat, _ b: WideFloat) -> WideFloat {
  let (ia, ib) = (unsafeBitCast(a, to: WideLaneMask.self), unsafeBitCast(b, to: WideLaneMask.self))
  return unsafeBitCast((ia & mask) | (ib & ~mask), to: WideFloat.self)
}

/// Stores the first `lanes` of `v` at `p` with one vector store, keeping the floats after them:
/// they are read and written back unchanged, so they must belong to the caller (nobody else
/// may write them meanwhile) and lie inside an allocation.
@inlinable @inline(__always)
public func storeWide(_ v: WideFloat, _ p: UnsafeMutablePointer<Float>, keeping mask: WideLaneMask)
{
  storeWide(select(mask, v, loadWide(p)), p)
}

/// Loads one ``WideFloat`` from `p` (unaligned).
@inlinable @inline(__always)
public func loadWide(_ p: UnsafePointer<Float>) -> WideFloat {
  UnsafeRawPointer(p).loadUnaligned(as: WideFloat.self)
}

/// Stores one ``WideFloat`` to `p` (unaligned).
@inlinable @inline(__always)
public func storeWide(_ v: WideFloat, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: v, as: WideFloat.self)
}

/// Sum of sixteen lanes: the two halves added lane by lane, then eight lanes.
@inlinable @inline(__always)
public func horizontalSum(_ v: SIMD16<Float>) -> Float { horizontalSum(v.lowHalf + v.highHalf) }

/// `fastExp` for sixteen lanes: the same polynomial and constants, operation for
/// operation (a generic version over the SIMD width does not inline its stdlib calls, see the
/// type's comment), so both widths give the same bits lane for lane.
@inlinable @inline(__always)
public func fastExp(_ input: SIMD16<Float>) -> SIMD16<Float> {
  typealias V = SIMD16<Float>
  var x = input.replacing(with: 88.0, where: input .> 88.0)
  x = x.replacing(with: -87.0, where: x .< -87.0)
  let shifter = V(repeating: 12_582_912.0)
  let t = shifter.plusProduct(x, V(repeating: 1.442_695_04))
  let n = t - shifter
  var r = x.plusProduct(n, V(repeating: -0.693_359_375))
  r = r.plusProduct(n, V(repeating: 2.121_944_4e-4))
  var p = V(repeating: 1.398_199_95e-3).plusProduct(V(repeating: 1.987_569_15e-4), r)
  p = V(repeating: 8.333_451_9e-3).plusProduct(p, r)
  p = V(repeating: 4.166_579_59e-2).plusProduct(p, r)
  p = V(repeating: 1.666_666_55e-1).plusProduct(p, r)
  p = V(repeating: 5.000_000_12e-1).plusProduct(p, r)
  let r2 = r * r
  let y = (r + V(repeating: 1)).plusProduct(p, r2)
  let bits = unsafeBitCast(t, to: SIMD16<Int32>.self) &- SIMD16<Int32>(repeating: 0x4B40_0000)
  let scale = unsafeBitCast((bits &+ SIMD16<Int32>(repeating: 127)) &<< 23, to: V.self)
  return y * scale
}

/// `fastSigmoid` for sixteen lanes, the same expression.
@inlinable @inline(__always)
public func fastSigmoid(_ x: SIMD16<Float>) -> SIMD16<Float> {
  let one = SIMD16<Float>(repeating: 1)
  return one / (one + fastExp(-x))
}

/// The last `rest` (< ``WideFloat``'s lane count) elements of a wide plane kernel, as
/// ``withPaddedTail(_:_:rest:_:)`` does for eight lanes.
@inline(__always)
func withWidePaddedTail(
  _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rest: Int,
  _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
) {
  let lanes = WideFloat.scalarCount
  withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * lanes) { t in
    let base = t.baseAddress!
    base.update(repeating: 0, count: lanes)
    base.update(from: x, count: rest)
    body(base, base + lanes)
    y.update(from: base + lanes, count: rest)
  }
}

/// ``withPaddedTail(_:_:_:rest:_:)`` (the backward form) at ``WideFloat``'s lane count.
@inline(__always)
func withWidePaddedTail<R>(
  _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
  rest: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> R
) -> R {
  let lanes = WideFloat.scalarCount
  return withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * lanes) { t in
    let base = t.baseAddress!
    base.update(repeating: 0, count: 2 * lanes)
    base.update(from: x, count: rest)
    (base + lanes).update(from: g, count: rest)
    let result = body(base, base + lanes, base + 2 * lanes)
    dx.update(from: base + 2 * lanes, count: rest)
    return result
  }
}

/// The last `rest` (< 8) elements of a plane kernel through that kernel's own vector loop: `x`
/// copied into a zero-padded 8-lane buffer, `body` run on it, and the first `rest` outputs
/// copied to `y`. Keeps one copy of a kernel's vector body (a second one makes the optimizer
/// split the sigmoid into scalars).
@inline(__always)
func withPaddedTail(
  _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rest: Int,
  _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
) {
  withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { t in
    let base = t.baseAddress!
    base.update(repeating: 0, count: 8)
    base.update(from: x, count: rest)
    body(base, base + 8)
    y.update(from: base + 8, count: rest)
  }
}

/// ``withPaddedTail(_:_:rest:_:)`` for a backward kernel: `x` and the upstream gradient `g`
/// padded with zeros (so the padding adds nothing to any sum), `dx` copied back.
@inline(__always)
func withPaddedTail<R>(
  _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
  rest: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> R
) -> R {
  withUnsafeTemporaryAllocation(of: Float.self, capacity: 24) { t in
    let base = t.baseAddress!
    base.update(repeating: 0, count: 16)
    base.update(from: x, count: rest)
    (base + 8).update(from: g, count: rest)
    let result = body(base, base + 8, base + 16)
    dx.update(from: base + 16, count: rest)
    return result
  }
}

/// Scalar sigmoid with the same stable form, for tails and reference checks.
@inlinable @inline(__always)
public func stableSigmoid(_ x: Float) -> Float {
  if x >= 0 {
    return 1 / (1 + expf(-x))
  }
  let e = expf(x)
  return e / (1 + e)
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs `body` over `count` floats eight lanes at a time; the tail is padded with zeros, so
/// `body` must accept a zero lane (every elementwise kernel here does).
@inlinable @inline(__always)
public func forEachVector(
  _ count: Int, _ body: (_ index: Int, _ lanes: Int) -> Void
) {
  var i = 0
  while i + 8 <= count {
    body(i, 8)
    i += 8
  }
  if i < count { body(i, count - i) }
}

/// Loads `lanes` floats (at most 8) from `p`, zero-filling the rest.
@inlinable @inline(__always)
public func load8(_ p: UnsafePointer<Float>, lanes: Int = 8) -> Float8 {
  if lanes == 8 { return UnsafeRawPointer(p).loadUnaligned(as: Float8.self) }
  var v = Float8(repeating: 0)
  for l in 0..<lanes { v[l] = p[l] }
  return v
}

/// Stores the first `count` floats of `v` (fewer than a vector) to `p` and nothing past them,
/// in pieces of eight and four floats and then one by one: for a row's last vector where the
/// floats after it are another thread's.
@inlinable @inline(__always)
public func storeWidePrefix(_ v: WideFloat, _ p: UnsafeMutablePointer<Float>, count: Int) {
  var l = 0
  #if ACON_VECTOR16
    if count >= 8 {
      store8(v.lowHalf, p)
      l = 8
    }
    if count - l >= 4 {
      let four = l == 0 ? v.lowHalf.lowHalf : v.highHalf.lowHalf
      UnsafeMutableRawPointer(p + l).storeBytes(of: four, as: SIMD4<Float>.self)
      l += 4
    }
  #else
    if count >= 4 {
      UnsafeMutableRawPointer(p).storeBytes(of: v.lowHalf, as: SIMD4<Float>.self)
      l = 4
    }
  #endif
  while l < count {
    p[l] = v[l]
    l += 1
  }
}

/// Stores the first `lanes` floats of `v` to `p`.
@inlinable @inline(__always)
public func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>, lanes: Int = 8) {
  if lanes == 8 {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
    return
  }
  for l in 0..<lanes { p[l] = v[l] }
}

/// Sum of eight lanes.
@inlinable @inline(__always)
public func horizontalSum(_ v: Float8) -> Float {
  let a = v.lowHalf + v.highHalf
  let b = a.lowHalf + a.highHalf
  return b[0] + b[1]
}

/// The low 32 bits of each lane (one `vpmovqd`). The standard library's
/// `init(truncatingIfNeeded:)` is generic over the source vector and was left as a call in
/// large kernels (Winograd, max pooling), with the vectors passed through the stack; this loop
/// is always inlined, and LLVM turns its eight lanes into the one instruction.
@inlinable @inline(__always)
public func lowHalves(_ v: SIMD8<UInt64>) -> SIMD8<UInt32> {
  var r = SIMD8<UInt32>()
  r[0] = UInt32(truncatingIfNeeded: v[0])
  r[1] = UInt32(truncatingIfNeeded: v[1])
  r[2] = UInt32(truncatingIfNeeded: v[2])
  r[3] = UInt32(truncatingIfNeeded: v[3])
  r[4] = UInt32(truncatingIfNeeded: v[4])
  r[5] = UInt32(truncatingIfNeeded: v[5])
  r[6] = UInt32(truncatingIfNeeded: v[6])
  r[7] = UInt32(truncatingIfNeeded: v[7])
  return r
}

/// Each lane zero-extended to 64 bits (one `vpmovzxdq`), inlined for the same reason as
/// ``lowHalves(_:)``.
@inlinable @inline(__always)
public func zeroExtended(_ v: SIMD8<UInt32>) -> SIMD8<UInt64> {
  var r = SIMD8<UInt64>()
  r[0] = UInt64(v[0])
  r[1] = UInt64(v[1])
  r[2] = UInt64(v[2])
  r[3] = UInt64(v[3])
  r[4] = UInt64(v[4])
  r[5] = UInt64(v[5])
  r[6] = UInt64(v[6])
  r[7] = UInt64(v[7])
  return r
}

/// The even and odd floats of the 16 at `p`. Bit-cast to 64-bit lanes the even floats are the
/// low halves, and the truncation compiles to two shuffles; `SIMD16.evenHalf` of a loaded vector
/// became 16 scalar loads.
@inlinable @inline(__always)
public func loadDeinterleaved(_ p: UnsafePointer<Float>) -> (even: Float8, odd: Float8) {
  let pairs = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt64>.self)
  let even = lowHalves(pairs)
  let odd = lowHalves(pairs &>> 32)
  return (unsafeBitCast(even, to: Float8.self), unsafeBitCast(odd, to: Float8.self))
}

/// `a[0], b[0], a[1], b[1], ...`: the inverse of ``loadDeinterleaved(_:)``, by widening 32-bit
/// lanes to 64 and shifting.
@inlinable @inline(__always)
public func interleaved(_ a: Float8, _ b: Float8) -> SIMD16<Float> {
  let low = zeroExtended(unsafeBitCast(a, to: SIMD8<UInt32>.self))
  let high = zeroExtended(unsafeBitCast(b, to: SIMD8<UInt32>.self))
  return unsafeBitCast(low | (high &<< 32), to: SIMD16<Float>.self)
}

/// Floats `0, 4, 8, ...`, `1, 5, 9, ...`, `2, 6, ...` and `3, 7, ...` of the 32 at `p`: the even
/// floats' even and odd lanes, and the odd floats', by ``loadDeinterleaved(_:)``'s shuffles.
@inlinable @inline(__always)
public func loadDeinterleaved4(_ p: UnsafePointer<Float>) -> (Float8, Float8, Float8, Float8) {
  let a = loadDeinterleaved(p)
  let b = loadDeinterleaved(p + 16)
  let evens = unsafeBitCast(SIMD16(lowHalf: a.even, highHalf: b.even), to: SIMD8<UInt64>.self)
  let odds = unsafeBitCast(SIMD16(lowHalf: a.odd, highHalf: b.odd), to: SIMD8<UInt64>.self)
  return (
    unsafeBitCast(lowHalves(evens), to: Float8.self),
    unsafeBitCast(lowHalves(odds), to: Float8.self),
    unsafeBitCast(lowHalves(evens &>> 32), to: Float8.self),
    unsafeBitCast(lowHalves(odds &>> 32), to: Float8.self)
  )
}

/// Writes `a[0], b[0], c[0], d[0], a[1], ...` (32 floats) to `p`, the inverse of
/// ``loadDeinterleaved4(_:)``: interleaving `(a, c)` with `(b, d)` puts each lane's four side
/// by side.
@inlinable @inline(__always)
public func storeInterleaved4(
  _ a: Float8, _ b: Float8, _ c: Float8, _ d: Float8, _ p: UnsafeMutablePointer<Float>
) {
  let ac = interleaved(a, c)
  let bd = interleaved(b, d)
  let raw = UnsafeMutableRawPointer(p)
  raw.storeBytes(of: interleaved(ac.lowHalf, bd.lowHalf), as: SIMD16<Float>.self)
  raw.storeBytes(
    of: interleaved(ac.highHalf, bd.highHalf), toByteOffset: 64, as: SIMD16<Float>.self)
}

/// `a[0], 0, a[1], 0, ...`.
@inlinable @inline(__always)
public func spreadToEven(_ a: Float8) -> SIMD16<Float> {
  unsafeBitCast(
    zeroExtended(unsafeBitCast(a, to: SIMD8<UInt32>.self)),
    to: SIMD16<Float>.self)
}

/// Float sums kept lane by lane over a few short rows and moved into Float64 every
/// ``flushFloats`` values: a horizontal sum per row cost more than a 16- or 49-float row's
/// loads, while each lane still adds only a few dozen floats before the Float64 total takes
/// them (rows longer than ``flushFloats`` go into Float64 one by one).
/// The lanes live in the caller's local variables: kept in a struct, LLVM split them into
/// four 128-bit pieces and rebuilt them on every row.
@usableFromInline
enum LaneSums {
  @usableFromInline static var flushFloats: Int { 512 }

  /// `0..<rows` in blocks of rows of `plane` floats that hold about ``flushFloats`` values
  /// (one row at least): each block's lanes are summed into Float64 at its end. The lanes
  /// start afresh in each block's loop: reset by a condition inside the row loop, LLVM
  /// kept them in 128-bit pieces.
  @inlinable @inline(__always)
  static func rowBlocks(
    _ rows: Int, plane: Int
  ) -> LazyMapSequence<StrideTo<Int>, Range<Int>> {
    // Rows shorter than a vector put their floats in the same first lanes row after row:
    // those go into Float64 row by row.
    let block = plane < WideFloat.scalarCount ? 1 : max(1, flushFloats / plane)
    return stride(from: 0, to: rows, by: block).lazy.map { $0..<min($0 + block, rows) }
  }

  /// The sum of `v`'s lanes. Its last steps are a call: inlined, LLVM spread their shuffles
  /// into the row loop; and a call takes a vector in 128-bit pieces, so the halving that
  /// keeps the accumulator whole stays here.
  @inlinable @inline(__always)
  static func reduced(_ v: WideFloat) -> Double {
    #if ACON_VECTOR16
      return reducedHalves(v.lowHalf + v.highHalf)
    #else
      return reducedHalves(v)
    #endif
  }

  @usableFromInline @inline(never)
  static func reducedHalves(_ v: Float8) -> Double { Double(horizontalSum(v)) }
}
