/// Inverted dropout: kept elements are scaled by `1 / (1 - p)` in training, so evaluation is the
/// identity. The mask is one bit per element (1 = kept), 1/32 of the input's memory, which is
/// all the backward pass needs.
public enum DropoutKernel {
  /// Number of 64-bit words in the mask of `count` elements.
  @inlinable
  public static func maskWords(_ count: Int) -> Int { (count + 63) / 64 }

  /// Fills `mask` (`maskWords(count)` words) with independent keep bits: each element is dropped
  /// with probability `probability`, decided by a 32-bit uniform draw (two per `next()`), in
  /// element order, so a given generator state always gives the same mask.
  @inlinable
  public static func makeMask<G: RandomNumberGenerator>(
    _ mask: UnsafeMutablePointer<UInt64>, count: Int, probability: Float, using rng: inout G
  ) {
    // Keep when the draw u (in units of 2^-32) is at least p * 2^32.
    let threshold = UInt64((Double(probability) * 4_294_967_296.0).rounded(.down))
    let words = maskWords(count)
    for w in 0..<words {
      var bits: UInt64 = 0
      let lanes = min(64, count - w * 64)
      var k = 0
      while k < lanes {
        let r = rng.next()
        if r & 0xFFFF_FFFF >= threshold { bits |= 1 << UInt64(k) }
        if k + 1 < lanes, r >> 32 >= threshold { bits |= 1 << UInt64(k + 1) }
        k += 2
      }
      mask[w] = bits
    }
  }

  /// `y = x * scale` where the mask bit is set, else 0 (forward and backward alike).
  public static func apply(
    _ x: UnsafePointer<Float>, mask: UnsafePointer<UInt64>, scale: Float,
    _ y: UnsafeMutablePointer<Float>, count: Int
  ) {
    let words = maskWords(count)
    Parallel.forRanges(words, minimumChunk: 256) { range in
      for w in range {
        let bits = mask[w]
        let base = w * 64
        let lanes = min(64, count - base)
        if lanes == 64 {
          // Eight lanes at a time: expand a byte of the mask into a lane mask.
          for v in 0..<8 {
            let byte = UInt32(truncatingIfNeeded: bits >> UInt64(v * 8))
            let laneBits = SIMD8<UInt32>(repeating: byte) & SIMD8<UInt32>(1, 2, 4, 8, 16, 32, 64, 128)
            let keep = laneBits .!= SIMD8<UInt32>(repeating: 0)
            let xs = load8(x + base + v * 8) * Float8(repeating: scale)
            store8(Float8(repeating: 0).replacing(with: xs, where: keep), y + base + v * 8)
          }
        } else {
          for k in 0..<lanes {
            y[base + k] = (bits >> UInt64(k)) & 1 == 1 ? x[base + k] * scale : 0
          }
        }
      }
    }
  }
}
