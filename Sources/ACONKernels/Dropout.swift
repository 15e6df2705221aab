/// Inverted dropout: kept elements are scaled by `1 / (1 - p)` in training, so evaluation is the
/// identity. The mask is one bit per element (1 = kept), 1/32 of the input's memory, which is
/// all the backward pass needs.
public enum DropoutKernel {
  /// Number of 64-bit words in the mask of `count` elements.
  @inlinable
  public static func maskWords(_ count: Int) -> Int { (count + 63) / 64 }

  /// Fills `mask` (`maskWords(count)` words) with independent keep bits: each element is dropped
  /// with probability `probability`.
  ///
  /// Element `i`'s 32-bit draw is `mix(mix(i ^ seedLow) ^ seedHigh)`, with `mix` the
  /// `lowbias32` integer hash (Wellons, "Prospecting for hash functions", 2018): a counter-based
  /// generator, so the mask depends only on `seed` and the element index, never on how the work
  /// is split across the cores, and eight draws run per SIMD instruction.
  public static func makeMask(
    _ mask: UnsafeMutablePointer<UInt64>, count: Int, probability: Float, seed: UInt64
  ) {
    // Keep when the draw is at least p * 2^32.
    let cut = (Double(probability) * 4_294_967_296.0).rounded(.down)
    let threshold = SIMD8<UInt32>(repeating: UInt32(min(cut, 4_294_967_295)))
    let seedLow = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: seed))
    let seedHigh = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: seed >> 32))
    let lanes = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7)
    let weights = SIMD8<UInt32>(1, 2, 4, 8, 16, 32, 64, 128)
    let zero = SIMD8<UInt32>(repeating: 0)
    let words = maskWords(count)
    Parallel.forRanges(words, minimumChunk: 512) { range in
      for w in range {
        var bits: UInt64 = 0
        for v in 0..<8 {
          let index = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: w * 64 + v * 8)) &+ lanes
          let draw = mix32(mix32(index ^ seedLow) ^ seedHigh)
          let byte = zero.replacing(with: weights, where: draw .>= threshold)
          let half = byte.lowHalf | byte.highHalf
          let quarter = half.lowHalf | half.highHalf
          bits |= UInt64(quarter[0] | quarter[1]) << UInt64(v * 8)
        }
        let valid = count - w * 64
        if valid < 64 { bits &= (1 << UInt64(valid)) - 1 }
        mask[w] = bits
      }
    }
  }

  /// The `lowbias32` hash on eight lanes: a bijection of 32-bit integers with good avalanche.
  @inlinable @inline(__always)
  static func mix32(_ value: SIMD8<UInt32>) -> SIMD8<UInt32> {
    var x = value
    x ^= x &>> 16
    x &*= 0x7FEB_352D
    x ^= x &>> 15
    x &*= 0x846C_A68B
    x ^= x &>> 16
    return x
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
            let laneBits =
              SIMD8<UInt32>(repeating: byte) & SIMD8<UInt32>(1, 2, 4, 8, 16, 32, 64, 128)
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
