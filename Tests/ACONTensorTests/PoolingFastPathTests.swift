import ACONTensor
import Testing

/// The vectorised 3x3 stride-2 max pool (rows wide enough for whole vectors) against a naive
/// scan: values with and without gradients recorded, and where the gradient goes (ties to the
/// first maximum, NaN wins).
@Suite("Pooling fast path")
struct PoolingFastPathTests {
  /// Naive max pool returning values and the flat in-plane argmax of each window.
  static func naive(_ x: [Float], planes: Int, h: Int, w: Int, padding p: Int) -> ([Float], [Int]) {
    let oh = (h + 2 * p - 3) / 2 + 1
    let ow = (w + 2 * p - 3) / 2 + 1
    var values: [Float] = []
    var arg: [Int] = []
    for plane in 0..<planes {
      for i in 0..<oh {
        for j in 0..<ow {
          var best = -1
          var value = Float.nan
          for r in (i * 2 - p)..<(i * 2 - p + 3) where r >= 0 && r < h {
            for c in (j * 2 - p)..<(j * 2 - p + 3) where c >= 0 && c < w {
              let v = x[plane * h * w + r * w + c]
              if best < 0 || v > value || v.isNaN {
                value = v
                best = r * w + c
              }
            }
          }
          values.append(value)
          arg.append(best)
        }
      }
    }
    return (values, arg)
  }

  @Test(arguments: [(0, 37, 41), (1, 40, 56), (1, 9, 112), (0, 5, 18)])
  func matchesNaiveScan(padding: Int, h: Int, w: Int) throws {
    var rng = RandomGenerator(seed: 3)
    let planes = 3
    // Few distinct values, so most windows hold ties; a sprinkle of NaNs.
    var values = (0..<(planes * h * w)).map { _ in Float(Int(rng.next() % 4)) }
    for k in stride(from: 5, to: values.count, by: 97) { values[k] = .nan }
    let x = Parameter(Tensor(shape: [1, planes, h, w], values: values))
    let y = try Tensor.maxPool2d(x.value, kernelSize: 3, stride: 2, padding: padding)
    let (expected, arg) = Self.naive(values, planes: planes, h: h, w: w, padding: padding)
    #expect(y.count == expected.count)
    let same = zip(y.scalars, expected).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
    #expect(same)
    // Inference keeps no positions and runs its own kernel: the same values.
    let inferred = try withoutGradients {
      try Tensor.maxPool2d(x.value, kernelSize: 3, stride: 2, padding: padding)
    }
    #expect(zip(inferred.scalars, expected).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) })
    try y.sum().backward()
    var grad = [Float](repeating: 0, count: values.count)
    let outPlane = expected.count / planes
    for (o, a) in arg.enumerated() { grad[(o / outPlane) * h * w + a] += 1 }
    #expect(x.grad!.scalars == grad)
  }
}
