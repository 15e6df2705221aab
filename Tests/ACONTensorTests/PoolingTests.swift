import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("Pooling")
struct PoolingTests {
  /// Distinct values 0.1 apart in random order, so no window has a tie, even after a
  /// finite-difference step.
  static func distinctValues(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let n = shape.reduce(1, *)
    var values = (0..<n).map { Float($0) * 0.1 - Float(n) * 0.05 }
    values.shuffle(using: &rng)
    return Tensor(shape: shape, values: values)
  }

  /// Naive max / average pooling with the window clipped to the input, as reference.
  static func reference(
    _ x: Tensor, kernel k: Int, stride s: Int, padding p: Int, max useMax: Bool
  ) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let oh = (h + 2 * p - k) / s + 1
    let ow = (w + 2 * p - k) / s + 1
    var out: [Float] = []
    for plane in 0..<(n * c) {
      for i in 0..<oh {
        for j in 0..<ow {
          var best = -Float.infinity
          var sum: Float = 0
          for r in (i * s - p)..<(i * s - p + k) where r >= 0 && r < h {
            for q in (j * s - p)..<(j * s - p + k) where q >= 0 && q < w {
              let v = x.data[plane * h * w + r * w + q]
              best = max(best, v)
              sum += v
            }
          }
          out.append(useMax ? best : sum / Float(k * k))
        }
      }
    }
    return Tensor(shape: [n, c, oh, ow], values: out)
  }

  /// Narrow inputs run the one-column path only; widths from 17 up also run the eight-column
  /// path, with its borders and a scalar tail.
  @Test(arguments: [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0), (1, 2, 0), (5, 2, 2), (2, 1, 1)])
  func valuesMatchReference(kernel: Int, stride: Int, padding: Int) throws {
    for (k, shape) in [[2, 3, 7, 8], [1, 2, 5, 17], [1, 2, 4, 40], [1, 1, 3, 53]].enumerated() {
      let x = Self.distinctValues(shape, seed: UInt64(k))
      let m = try Tensor.maxPool2d(x, kernelSize: kernel, stride: stride, padding: padding)
      let a = try Tensor.avgPool2d(x, kernelSize: kernel, stride: stride, padding: padding)
      let rm = Self.reference(x, kernel: kernel, stride: stride, padding: padding, max: true)
      let ra = Self.reference(x, kernel: kernel, stride: stride, padding: padding, max: false)
      #expect(m.shape == rm.shape)
      #expect(m.scalars == rm.scalars, "\(shape)")
      #expect(maxAbsDifference(a, ra) < 1e-5, "\(shape)")
    }
  }

  @Test func outputShapesFollowPyTorch() throws {
    let x = Tensor.zeros([1, 1, 112, 112])
    #expect(try Tensor.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1).shape == [1, 1, 56, 56])
    #expect(try Tensor.maxPool2d(x, kernelSize: 2).shape == [1, 1, 56, 56])
    let odd = Tensor.zeros([2, 4, 7, 5])
    #expect(try Tensor.avgPool2d(odd, kernelSize: 3, stride: 2, padding: 1).shape == [2, 4, 4, 3])
    #expect(try Tensor.avgPool2d(odd, kernelSize: 2).shape == [2, 4, 3, 2])
  }

  @Test func paddingCountsAsMinusInfinityForMaxAndZeroForAverage() throws {
    let x = Tensor(shape: [1, 1, 2, 2], values: [-4, -3, -2, -1])
    let m = try Tensor.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1)
    #expect(m.scalars == [-1])
    let a = try Tensor.avgPool2d(x, kernelSize: 3, stride: 2, padding: 1)
    #expect(abs(a.item - (-10 / 9)) < 1e-6)
  }

  @Test(arguments: [(3, 2, 1), (2, 2, 0), (3, 1, 0)])
  func gradients(kernel: Int, stride: Int, padding: Int) throws {
    let x = Self.distinctValues([2, 1, 5, 37], seed: 2)
    var check = GradientCheck()
    check.maximumChecks = 128
    let maxFailures = try check.failures([x]) { t in
      try Tensor.maxPool2d(t[0], kernelSize: kernel, stride: stride, padding: padding)
    }
    #expect(maxFailures.isEmpty, "\(maxFailures.prefix(5))")
    let avgFailures = try check.failures([x]) { t in
      try Tensor.avgPool2d(t[0], kernelSize: kernel, stride: stride, padding: padding)
    }
    #expect(avgFailures.isEmpty, "\(avgFailures.prefix(5))")
  }

  @Test func tiesSendTheGradientToTheFirstMaximum() throws {
    let x = Parameter(Tensor(shape: [1, 1, 2, 2], values: [1, 1, 1, 1]))
    let y = try Tensor.maxPool2d(x.value, kernelSize: 2)
    try y.sum().backward()
    #expect(x.grad!.scalars == [1, 0, 0, 0])
    // The same on the eight-column path: constant rows, 2x2 windows, stride 2.
    let wide = Parameter(Tensor(shape: [1, 1, 2, 40], repeating: 3))
    try Tensor.maxPool2d(wide.value, kernelSize: 2).sum().backward()
    let expected = (0..<80).map { $0 < 40 && $0 % 2 == 0 ? Float(1) : 0 }
    #expect(wide.grad!.scalars == expected)
  }

  @Test func minusInfinityInputsKeepTheFirstPosition() throws {
    let x = Parameter(Tensor(shape: [1, 1, 3, 40], repeating: -.infinity))
    let y = try Tensor.maxPool2d(x.value, kernelSize: 3, stride: 2, padding: 1)
    #expect(y.scalars.allSatisfy { $0 == -.infinity })
    try y.backward(seed: Tensor(shape: y.shape, repeating: 1))
    // Window (i, j) starts at row max(2i - 1, 0), column max(2j - 1, 0).
    var expected = [Float](repeating: 0, count: 120)
    for i in 0..<2 { for j in 0..<20 { expected[max(2 * i - 1, 0) * 40 + max(2 * j - 1, 0)] += 1 } }
    #expect(x.grad!.scalars == expected)
  }

  @Test func badInputsThrow() throws {
    func message(_ body: () throws -> Tensor) -> String? {
      do {
        _ = try body()
        return nil
      } catch {
        return "\(error)"
      }
    }
    let x = Tensor.zeros([1, 2, 4, 4])
    for pool in [Tensor.maxPool2d, Tensor.avgPool2d] {
      let rank = message { try pool(Tensor.zeros([2, 4, 4]), 2, nil, 0) }
      #expect(rank?.contains("[2, 4, 4]") == true)
      let big = message { try pool(x, 7, 1, 1) }
      #expect(big?.contains("larger than the padded input") == true)
      #expect(big?.contains("[1, 2, 4, 4]") == true)
      #expect(message { try pool(x, 0, 1, 0) } != nil)
      #expect(message { try pool(x, 2, 0, 0) } != nil)
      #expect(message { try pool(x, 2, 1, -1) } != nil)
      #expect(message { try pool(x, 3, 2, 2) }?.contains("half of the kernel") == true)
      #expect(message { try pool(x, 6, 1, 1) } == nil)
    }
  }
}

@Suite("Pooling against PyTorch")
struct PoolingGoldenTests {
  @Test(arguments: ["pool9_", "pool8_", "poolwide_"])
  func matchesPyTorch(prefix: String) throws {
    let file = try NormalizationGolden.load()
    let x = try file.tensor(prefix + "x")
    for (kind, pool) in [("max", Tensor.maxPool2d), ("avg", Tensor.avgPool2d)] {
      let input = Parameter(x)
      let y = try pool(input.value, 3, 2, 1)
      try (y * file.tensor(prefix + kind + "_r")).sum().backward()
      let expected = try file.tensor(prefix + kind + "_y")
      #expect(y.shape == expected.shape)
      #expect(relativeError(y, expected) < 1e-6, "\(kind)")
      #expect(relativeError(input.grad!, try file.tensor(prefix + kind + "_dx")) < 1e-6, "\(kind)")
    }
  }
}
