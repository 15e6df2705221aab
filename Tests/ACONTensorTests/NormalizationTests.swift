import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("Batch norm and dropout")
struct NormalizationTests {
  /// Per-channel mean and biased variance in Float64, the reference for the kernel.
  static func channelStatistics(_ x: Tensor) -> (mean: [Double], variance: [Double]) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.rank == 4 ? x.shape[2] * x.shape[3] : 1
    var mean = [Double](repeating: 0, count: c)
    var variance = [Double](repeating: 0, count: c)
    for ch in 0..<c {
      var values: [Double] = []
      for b in 0..<n {
        for i in 0..<plane { values.append(Double(x.data[(b * c + ch) * plane + i])) }
      }
      let m = values.reduce(0, +) / Double(values.count)
      mean[ch] = m
      variance[ch] = values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count)
    }
    return (mean, variance)
  }

  @Test func trainingNormalisesAndUpdatesRunningStatistics() throws {
    var rng = RandomGenerator(seed: 3)
    // A large mean against a small spread: a one-pass E[x^2] - E[x]^2 in Float32 would fail here.
    let x = Tensor.randomNormal([3, 4, 7, 9], mean: 0, std: 0.5, using: &rng).adding(1000)
    let w = Tensor.randomNormal([4], using: &rng)
    let b = Tensor.randomNormal([4], using: &rng)
    let runningMean = Tensor(shape: [4], values: [0.5, -1, 2, 0])
    let runningVariance = Tensor(shape: [4], values: [1, 2, 0.5, 3])
    let before = (runningMean.scalars, runningVariance.scalars)
    let y = try Tensor.batchNorm(
      x, weight: w, bias: b, runningMean: runningMean, runningVariance: runningVariance,
      training: true, momentum: 0.1, epsilon: 1e-5)
    let (mean, variance) = Self.channelStatistics(x)
    let m = Double(3 * 7 * 9)
    for ch in 0..<4 {
      let expectedMean = 0.9 * Double(before.0[ch]) + 0.1 * mean[ch]
      let expectedVar = 0.9 * Double(before.1[ch]) + 0.1 * variance[ch] * m / (m - 1)
      #expect(abs(Double(runningMean.scalars[ch]) - expectedMean) < 1e-3)
      #expect(abs(Double(runningVariance.scalars[ch]) - expectedVar) < 1e-4)
    }
    let inv = (0..<4).map { 1 / (variance[$0] + 1e-5).squareRoot() }
    var worst = 0.0
    for i in 0..<x.count {
      let ch = (i / 63) % 4
      let expected =
        (Double(x.data[i]) - mean[ch]) * inv[ch] * Double(w.data[ch]) + Double(b.data[ch])
      worst = max(worst, abs(Double(y.data[i]) - expected))
    }
    #expect(worst < 2e-3, "worst error \(worst)")
  }

  @Test func evalUsesRunningStatisticsAndLeavesThemAlone() throws {
    var rng = RandomGenerator(seed: 4)
    let x = Tensor.randomNormal([2, 3], using: &rng)
    let runningMean = Tensor(shape: [3], values: [0.5, -1, 2])
    let runningVariance = Tensor(shape: [3], values: [1, 4, 0.25])
    let y = try Tensor.batchNorm(
      x, weight: nil, bias: nil, runningMean: runningMean, runningVariance: runningVariance,
      training: false, epsilon: 0)
    #expect(runningMean.scalars == [0.5, -1, 2])
    #expect(runningVariance.scalars == [1, 4, 0.25])
    let std: [Float] = [1, 2, 0.5]
    for i in 0..<6 {
      let ch = i % 3
      #expect(abs(y.data[i] - (x.data[i] - runningMean.data[ch]) / std[ch]) < 1e-6)
    }
  }

  @Test(arguments: [[3, 2, 4, 5], [7, 3]])
  func trainingGradients(shape: [Int]) throws {
    var rng = RandomGenerator(seed: 5)
    let c = shape[1]
    let x = Tensor.randomNormal(shape, mean: 1, std: 2, using: &rng)
    let w = Tensor.randomNormal([c], using: &rng)
    let b = Tensor.randomNormal([c], using: &rng)
    let check = GradientCheck()
    let failures = try check.failures([x, w, b]) { t in
      try Tensor.batchNorm(
        t[0], weight: t[1], bias: t[2], runningMean: nil, runningVariance: nil, training: true)
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
    // Without affine parameters.
    let plain = try check.failures([x]) { t in
      try Tensor.batchNorm(
        t[0], weight: nil, bias: nil, runningMean: nil, runningVariance: nil, training: true)
    }
    #expect(plain.isEmpty, "\(plain.prefix(5))")
  }

  @Test(arguments: [[2, 3, 3, 4], [5, 4]])
  func evalGradients(shape: [Int]) throws {
    var rng = RandomGenerator(seed: 6)
    let c = shape[1]
    let x = Tensor.randomNormal(shape, using: &rng)
    let w = Tensor.randomNormal([c], using: &rng)
    let b = Tensor.randomNormal([c], using: &rng)
    let mean = Tensor.randomNormal([c], using: &rng)
    let variance = Tensor.randomUniform([c], low: 0.5, high: 2, using: &rng)
    let failures = try GradientCheck().failures([x, w, b]) { t in
      try Tensor.batchNorm(
        t[0], weight: t[1], bias: t[2], runningMean: mean, runningVariance: variance,
        training: false)
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
  }

  /// `batchNorm(..., fusedReLU: true)` gives the values and gradients of `relu(batchNorm(x))`.
  @Test(arguments: [
    ([4, 3, 5, 7], true), ([4, 3, 5, 7], false), ([9, 5], true), ([9, 5], false),
  ])
  func fusedReLUMatchesTheComposition(shape: [Int], training: Bool) throws {
    var rng = RandomGenerator(seed: 12)
    let c = shape[1]
    let x = Tensor.randomNormal(shape, using: &rng)
    let r = Tensor.randomNormal(shape, using: &rng)
    let mean = Tensor.randomNormal([c], std: 0.3, using: &rng)
    let variance = Tensor.randomUniform([c], low: 0.5, high: 2, using: &rng)
    let weight = Tensor.randomNormal([c], using: &rng)
    let bias = Tensor.randomNormal([c], using: &rng)
    func run(fused: Bool) throws -> (Tensor, [Tensor], [Float]) {
      let params = [x, weight, bias].map { Parameter($0) }
      let (rm, rv) = (mean.copy(), variance.copy())
      let bn = try Tensor.batchNorm(
        params[0].value, weight: params[1].value, bias: params[2].value, runningMean: rm,
        runningVariance: rv, training: training, fusedReLU: fused)
      let y = fused ? bn : bn.relu()
      try (y * r).sum().backward()
      return (y, params.map { $0.grad! }, rm.scalars + rv.scalars)
    }
    let (fy, fg, fs) = try run(fused: true)
    let (uy, ug, us) = try run(fused: false)
    #expect(fy.scalars == uy.scalars)
    #expect(fs == us)
    #expect(fy.scalars.contains(0) && fy.scalars.contains { $0 > 0 })
    for (a, b) in zip(fg, ug) { #expect(maxAbsDifference(a, b) < 1e-5) }
  }

  @Test func fusedReLUGradients() throws {
    var rng = RandomGenerator(seed: 14)
    let x = Tensor.randomNormal([3, 2, 3, 5], using: &rng)
    let w = Tensor.randomNormal([2], using: &rng)
    let b = Tensor.randomNormal([2], using: &rng)
    let failures = try GradientCheck(step: 1e-3, relative: 2e-2, absolute: 3e-3).failures([x, w, b])
    {
      t in
      try Tensor.batchNorm(
        t[0], weight: t[1], bias: t[2], runningMean: nil, runningVariance: nil, training: true,
        fusedReLU: true)
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
  }

  @Test func oneValuePerChannelInTrainingThrows() throws {
    for shape in [[1, 3, 1, 1], [1, 5]] {
      do {
        _ = try Tensor.batchNorm(
          Tensor.ones(shape), weight: nil, bias: nil, runningMean: nil, runningVariance: nil,
          training: true)
        Issue.record("batch norm trained on one value per channel for \(shape)")
      } catch let e as TensorError {
        #expect(e.description.contains("more than 1 value per channel"))
        #expect(e.description.contains("batchNorm"))
      }
    }
    // Evaluation on a single value is fine.
    let y = try Tensor.batchNorm(
      Tensor.ones([1, 2, 1, 1]), weight: nil, bias: nil, runningMean: Tensor.zeros([2]),
      runningVariance: Tensor.ones([2]), training: false, epsilon: 0)
    #expect(y.scalars == [1, 1])
  }

  @Test func badInputsThrowNamingTheShapes() throws {
    let x = Tensor.zeros([2, 3, 4, 4])
    func attempt(
      _ x: Tensor, weight: Tensor? = nil, mean: Tensor? = nil, variance: Tensor? = nil,
      training: Bool = true, momentum: Float = 0.1
    ) -> String? {
      do {
        _ = try Tensor.batchNorm(
          x, weight: weight, bias: nil, runningMean: mean, runningVariance: variance,
          training: training, momentum: momentum)
        return nil
      } catch {
        return "\(error)"
      }
    }
    let wrongRank = attempt(Tensor.zeros([2, 3, 4]))
    #expect(wrongRank?.contains("[2, 3, 4]") == true)
    let wrongWeight = attempt(x, weight: Tensor.ones([4]))
    #expect(wrongWeight?.contains("[2, 3, 4, 4] and [4]") == true)
    #expect(attempt(x, mean: Tensor.zeros([2]), variance: Tensor.ones([2])) != nil)
    #expect(attempt(x, mean: Tensor.zeros([3])) != nil)
    #expect(attempt(x, training: false) != nil)
    #expect(attempt(x, momentum: 2) != nil)
    #expect(attempt(x) == nil)
  }

  @Test func dropoutScalesKeptValuesAndIsReproducible() throws {
    let x = Tensor(shape: [1000, 10], repeating: 2)
    var rng = RandomGenerator(seed: 9)
    let y = try x.dropout(probability: 0.3, training: true, using: &rng)
    let kept = y.scalars.filter { $0 != 0 }
    #expect(kept.allSatisfy { abs($0 - 2 / 0.7) < 1e-5 })
    let fraction = Double(kept.count) / Double(x.count)
    #expect(abs(fraction - 0.7) < 0.02, "kept \(fraction)")
    var again = RandomGenerator(seed: 9)
    #expect(try x.dropout(probability: 0.3, training: true, using: &again).scalars == y.scalars)
    // The generator advanced: the next mask differs.
    #expect(try x.dropout(probability: 0.3, training: true, using: &rng).scalars != y.scalars)
    // Evaluation and p = 0 are the identity; p = 1 zeroes everything.
    #expect(try x.dropout(probability: 0.3, training: false, using: &rng).scalars == x.scalars)
    #expect(try x.dropout(probability: 0, training: true, using: &rng).scalars == x.scalars)
    #expect(
      try x.dropout(probability: 1, training: true, using: &rng).scalars.allSatisfy { $0 == 0 })
    #expect(throws: TensorError.self) {
      try x.dropout(probability: 1.5, training: true, using: &rng)
    }
    #expect(throws: TensorError.self) {
      try x.dropout(probability: -0.1, training: true, using: &rng)
    }
  }

  @Test func dropoutGradientWithFixedMask() throws {
    var rng = RandomGenerator(seed: 10)
    // 77 elements: a full 64-element mask word and a partial one.
    let x = Tensor.randomNormal([7, 11], using: &rng)
    let failures = try GradientCheck().failures([x]) { t in
      var fixed = RandomGenerator(seed: 11)
      return try t[0].dropout(probability: 0.4, training: true, using: &fixed)
    }
    #expect(failures.isEmpty, "\(failures.prefix(5))")
  }
}

/// The golden values written by scripts/golden/normalization.py (PyTorch).
enum NormalizationGolden {
  static func load() throws -> SafeTensorsFile {
    let url = try #require(
      Bundle.module.url(
        forResource: "normalization", withExtension: "safetensors", subdirectory: "Golden"))
    return try SafeTensors.read(url)
  }
}

@Suite("Batch norm against PyTorch")
struct NormalizationGoldenTests {
  @Test(arguments: ["bn4_", "bn2_"])
  func matchesPyTorch(prefix: String) throws {
    let file = try NormalizationGolden.load()
    func t(_ name: String) throws -> Tensor { try file.tensor(prefix + name) }
    let x1 = try t("x1")
    let c = x1.shape[1]
    let weight = Parameter(try t("weight"))
    let bias = Parameter(try t("bias"))
    let runningMean = Tensor.zeros([c])
    let runningVariance = Tensor.ones([c])
    let input = Parameter(x1)
    let r = try t("r")

    // Step 1 in training mode: output, gradients, running statistics.
    let y = try Tensor.batchNorm(
      input.value, weight: weight.value, bias: bias.value, runningMean: runningMean,
      runningVariance: runningVariance, training: true)
    try (y * r).sum().backward()
    #expect(relativeError(y, try t("train_y")) < 1e-5)
    #expect(relativeError(input.grad!, try t("train_dx")) < 1e-4)
    #expect(relativeError(weight.grad!, try t("train_dweight")) < 1e-5)
    #expect(relativeError(bias.grad!, try t("train_dbias")) < 1e-5)
    #expect(relativeError(runningMean, try t("running_mean_1")) < 1e-5)
    #expect(relativeError(runningVariance, try t("running_var_1")) < 1e-5)

    // Step 2 updates the statistics again.
    _ = try withoutGradients {
      try Tensor.batchNorm(
        try t("x2"), weight: weight.value, bias: bias.value, runningMean: runningMean,
        runningVariance: runningVariance, training: true)
    }
    #expect(relativeError(runningMean, try t("running_mean_2")) < 1e-5)
    #expect(relativeError(runningVariance, try t("running_var_2")) < 1e-5)

    // Evaluation mode with the running statistics.
    input.zeroGrad()
    weight.zeroGrad()
    bias.zeroGrad()
    let ye = try Tensor.batchNorm(
      input.value, weight: weight.value, bias: bias.value, runningMean: runningMean,
      runningVariance: runningVariance, training: false)
    try (ye * r).sum().backward()
    #expect(relativeError(ye, try t("eval_y")) < 1e-5)
    #expect(relativeError(input.grad!, try t("eval_dx")) < 1e-5)
    #expect(relativeError(weight.grad!, try t("eval_dweight")) < 1e-5)
    #expect(relativeError(bias.grad!, try t("eval_dbias")) < 1e-5)
  }
}
