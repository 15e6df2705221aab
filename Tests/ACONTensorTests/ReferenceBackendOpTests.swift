import ACONTensor
import ACONTestSupport
import Testing

/// Every op of the engine on the scalar reference backend against the CPU backend: values and
/// every gradient, from the same inputs. Tolerance 1e-5 of each tensor's largest magnitude
/// (Float32 kernels against Float64 sums: the differences seen are 1e-7 to 2e-6).
@Suite struct ReferenceBackendOpTests {
  let reference = ReferenceBackend.device
  let check = BackendComparison(tolerance: 1e-5)

  /// Forward and backward of `op` on leaves made from `shapes`, seeded with a random upstream
  /// gradient: the output, then each input's gradient.
  func forwardBackward(
    _ shapes: [[Int]], positive: Set<Int> = [], rng: inout RandomGenerator,
    _ op: ([Tensor]) throws -> Tensor
  ) throws -> [(String, Tensor)] {
    let leaves = shapes.enumerated().map { i, shape in
      Parameter(
        positive.contains(i)
          ? Tensor.randomUniform(shape, low: 0.5, high: 1.5, using: &rng)
          : Tensor.randomNormal(shape, using: &rng))
    }
    let y = try op(leaves.map(\.value))
    try y.backward(seed: Tensor.randomNormal(y.shape, using: &rng))
    return [("output", y)]
      + leaves.enumerated().compactMap { i, p in p.grad.map { ("d input \(i)", $0) } }
  }

  func expectAgreement(
    _ what: String, _ body: (inout RandomGenerator) throws -> [(String, Tensor)]
  ) throws {
    let (messages, worst) = try check.failures(reference: reference, body)
    #expect(messages.isEmpty, "\(what): \(messages.joined(separator: "; ")) (worst \(worst))")
  }

  @Test(arguments: [
    // (input, weight, stride, padding, dilation, groups)
    ([2, 4, 9, 9], [6, 4, 3, 3], 1, 1, 1, 1),  // Winograd on the CPU backend
    ([2, 3, 11, 11], [8, 3, 3, 3], 2, 1, 1, 1),  // a stride-2 stem
    ([2, 8, 10, 10], [8, 1, 3, 3], 2, 1, 1, 8),  // depthwise, stride 2
    ([2, 8, 7, 7], [8, 1, 3, 3], 1, 1, 1, 8),  // depthwise, stride 1
    ([2, 8, 6, 6], [12, 8, 1, 1], 1, 0, 1, 1),  // pointwise
    ([3, 16, 7, 7], [24, 16, 1, 1], 1, 0, 1, 1),  // pointwise on small images (PointwiseKernel)
    ([3, 8, 14, 14], [8, 1, 3, 3], 2, 1, 1, 8),  // depthwise, stride 2, rows of 14
    ([1, 6, 9, 9], [6, 3, 3, 3], 1, 2, 2, 2),  // grouped, dilated
  ])
  func convolution(
    _ x: [Int], _ w: [Int], _ stride: Int, _ padding: Int, _ dilation: Int, _ groups: Int
  ) throws {
    try expectAgreement("conv2d \(x) \(w)") { rng in
      try forwardBackward([x, w, [w[0]]], rng: &rng) {
        try Tensor.conv2d(
          $0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding, dilation: dilation,
          groups: groups)
      }
    }
  }

  @Test(arguments: [false, true]) func batchNorm(_ relu: Bool) throws {
    for training in [true, false] {
      try expectAgreement("batchNorm relu \(relu) training \(training)") { rng in
        let (mean, variance) = (
          Tensor.randomNormal([5], using: &rng),
          Tensor.randomUniform([5], low: 0.5, high: 2, using: &rng)
        )
        let out = try forwardBackward([[3, 5, 4, 4], [5], [5]], rng: &rng) {
          try Tensor.batchNorm(
            $0[0], weight: $0[1], bias: $0[2], runningMean: mean, runningVariance: variance,
            training: training, fusedReLU: relu)
        }
        return out + [("running mean", mean), ("running variance", variance)]
      }
    }
  }

  @Test func batchNormThenConvolution() throws {
    for training in [true, false] {
      try expectAgreement("batchNormThenConv2d training \(training)") { rng in
        let (mean, variance) = (Tensor.zeros([6]), Tensor.ones([6]))
        let out = try forwardBackward(
          [[3, 6, 4, 5], [6], [6], [5, 6, 1, 1], [5]], positive: [1], rng: &rng
        ) {
          try Tensor.batchNormThenConv2d(
            $0[0], batchNormWeight: $0[1], batchNormBias: $0[2], runningMean: mean,
            runningVariance: variance, training: training, weight: $0[3], bias: $0[4])
        }
        return out + [("running mean", mean), ("running variance", variance)]
      }
    }
  }

  @Test func batchNormAddReLU() throws {
    for training in [true, false] {
      try expectAgreement("batchNormAddReLU training \(training)") { rng in
        let (mean, variance) = (Tensor.zeros([4]), Tensor.ones([4]))
        return try forwardBackward([[2, 4, 5, 5], [2, 4, 5, 5], [4], [4]], rng: &rng) {
          try Tensor.batchNormAddReLU(
            $0[0], residual: $0[1], weight: $0[2], bias: $0[3], runningMean: mean,
            runningVariance: variance, training: training)
        }
      }
    }
  }

  @Test(arguments: [[1, 6, 1, 1], [3, 6, 1, 1], [3, 1, 1, 1], [3, 6, 4, 5]])
  func acon(_ betaShape: [Int]) throws {
    for gate in [ACONGate.sigmoid, .hardSigmoid] {
      try expectAgreement("acon beta \(betaShape) \(gate)") { rng in
        try forwardBackward([[3, 6, 4, 5], [1, 6, 1, 1], [1, 6, 1, 1], betaShape], rng: &rng) {
          try Tensor.acon($0[0], p1: $0[1], p2: $0[2], beta: $0[3], gate: gate)
        }
      }
    }
  }

  @Test func batchNormAcon() throws {
    for training in [true, false] {
      try expectAgreement("batchNormAcon training \(training)") { rng in
        let (mean, variance) = (Tensor.randomNormal([6], using: &rng), Tensor.ones([6]))
        return try forwardBackward([[2, 6, 5, 5], [6], [6], [6], [6], [1, 6, 1, 1]], rng: &rng) {
          try Tensor.batchNormAcon(
            $0[0], weight: $0[1], bias: $0[2], runningMean: mean, runningVariance: variance,
            training: training, momentum: 0.1, epsilon: 1e-5, p1: $0[3], p2: $0[4], beta: $0[5])
        } + [("running mean", mean)]
      }
    }
  }

  /// The fused batch norm + ACON + max pool (ShuffleNetV2's stem), ACON-C and meta-ACON, on
  /// planes the CPU backend fuses at either vector width: larger than 16 vectors (17x17, whose
  /// last vector is partial) and smaller than one (2x3, many of them, so that both workers take
  /// a run).
  @Test(arguments: [[2, 6, 17, 17], [40, 6, 2, 3]])
  func batchNormAconMaxPool(_ shape: [Int]) throws {
    for meta in [false, true] {
      try expectAgreement("batchNormAconMaxPool \(shape), meta-ACON \(meta)") { rng in
        let (mean, variance) = (Tensor.randomNormal([6], using: &rng), Tensor.ones([6]))
        let w = Parameter(Tensor.randomNormal([6, 6, 1, 1], std: 0.3, using: &rng))
        let generator: ((Tensor) throws -> Tensor)? =
          meta ? { try Tensor.conv2d($0, weight: w.value, bias: nil).sigmoid() } : nil
        let out = try forwardBackward(
          [shape, [6], [6], [6], [6]] + (meta ? [] : [[1, 6, 1, 1]]), rng: &rng
        ) {
          try Tensor.batchNormAconMaxPool(
            $0[0], weight: $0[1], bias: $0[2], runningMean: mean, runningVariance: variance,
            training: true, momentum: 0.1, epsilon: 1e-5, p1: $0[3], p2: $0[4],
            beta: meta ? nil : $0[5], generator: generator, poolKernelSize: 3, poolStride: 2,
            poolPadding: 1)
        }
        return out + (meta ? [("generator weight gradient", w.grad!)] : [])
          + [("running mean", mean)]
      }
    }
  }

  /// Planes whose last vector is partial (7x7, 14x14), enough of them that both workers take a
  /// run: each plane ends on one masked vector that reads into the planes after it and writes
  /// them back unchanged, where those are the same run's (for 2x2 and 1x1 planes, several; the
  /// last planes of a run, and of the tensor, take the padded copy: run under
  /// `scripts/sanitize.sh`, a vector past the tensor's end is a report).
  /// Planes of at most one vector (4x4, 3x3) take the fused forward's loop over the run.
  /// The fused backward of planes of one to four vectors (4x4, 5x5, 7x7) runs channel by
  /// channel, a partial last vector shifted back into the plane.
  @Test(arguments: [
    [16, 48, 7, 7], [6, 40, 14, 14], [64, 24, 4, 4], [40, 12, 3, 3], [64, 24, 2, 2],
    [48, 16, 1, 1], [12, 10, 5, 5],
  ])
  func aconOnSmallPlanesAcrossWorkers(_ shape: [Int]) throws {
    let c = shape[1]
    try expectAgreement("acon \(shape)") { rng in
      try forwardBackward([shape, [1, c, 1, 1], [1, c, 1, 1], [1, c, 1, 1]], rng: &rng) {
        try Tensor.acon($0[0], p1: $0[1], p2: $0[2], beta: $0[3], gate: .sigmoid)
      }
    }
    try expectAgreement("batchNormAcon \(shape)") { rng in
      let (mean, variance) = (Tensor.randomNormal([c], using: &rng), Tensor.ones([c]))
      return try forwardBackward([shape, [c], [c], [c], [c], [1, c, 1, 1]], rng: &rng) {
        try Tensor.batchNormAcon(
          $0[0], weight: $0[1], bias: $0[2], runningMean: mean, runningVariance: variance,
          training: true, momentum: 0.1, epsilon: 1e-5, p1: $0[3], p2: $0[4], beta: $0[5])
      }
    }
  }

  /// 5x5 planes, and 3x3 ones (the fused forward's loop over runs of one-vector planes, beta
  /// per sample).
  @Test(arguments: [[2, 6, 5, 5], [8, 6, 3, 3]])
  func batchNormMetaAcon(_ shape: [Int]) throws {
    for training in [true, false] {
      try expectAgreement("batchNormAcon with a generator \(shape), training \(training)") { rng in
        let (mean, variance) = (Tensor.randomNormal([6], using: &rng), Tensor.ones([6]))
        let w = Parameter(Tensor.randomNormal([6, 6, 1, 1], std: 0.3, using: &rng))
        // Off zero against its spread, as raw pixels are (not so far that the generator's
        // sigmoid saturates and hides its input).
        let out = try forwardBackward([shape, [6], [6], [6], [6]], rng: &rng) {
          try Tensor.batchNormAcon(
            $0[0].adding(3), weight: $0[1], bias: $0[2], runningMean: mean,
            runningVariance: variance, training: training, momentum: 0.1, epsilon: 1e-5,
            p1: $0[3], p2: $0[4], beta: nil
          ) { pooled in try Tensor.conv2d(pooled, weight: w.value, bias: nil).sigmoid() }
        }
        return out + [("generator weight gradient", w.grad!), ("running mean", mean)]
      }
    }
  }

  @Test func metaAconWithGenerator() throws {
    try expectAgreement("metaAcon") { rng in
      let w = Parameter(Tensor.randomNormal([6, 6, 1, 1], std: 0.5, using: &rng))
      let out = try forwardBackward([[2, 6, 4, 4], [6], [6]], rng: &rng) {
        try Tensor.metaAcon($0[0], p1: $0[1], p2: $0[2]) { pooled in
          try Tensor.conv2d(pooled, weight: w.value, bias: nil).sigmoid()
        }
      }
      return out + [("generator weight gradient", w.grad!)]
    }
  }

  @Test func pixelAconAndSmoothMaximum() throws {
    try expectAgreement("pixelMetaAcon") { rng in
      try forwardBackward(
        [[2, 5, 3, 4], [1, 5, 1, 1], [1, 5, 1, 1], [1, 5, 1, 1], [1, 5, 1, 1]], rng: &rng
      ) {
        try Tensor.pixelMetaAcon($0[0], p1: $0[1], p2: $0[2], weight: $0[3], bias: $0[4])
      }
    }
    try expectAgreement("smoothMaximum") { rng in
      try forwardBackward([[3, 7], [3, 7]], rng: &rng) { try Tensor.smoothMaximum($0[0], $0[1]) }
    }
  }

  @Test func pooling() throws {
    try expectAgreement("maxPool2d 3/2/1") { rng in
      try forwardBackward([[2, 3, 9, 9]], rng: &rng) {
        try Tensor.maxPool2d($0[0], kernelSize: 3, stride: 2, padding: 1)
      }
    }
    try expectAgreement("maxPool2d 3/2/1 without gradients") { rng in
      let x = Tensor.randomNormal([2, 3, 40, 40], using: &rng)
      return [
        (
          "output",
          try withoutGradients { try Tensor.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1) }
        )
      ]
    }
    try expectAgreement("conv2d with an evaluation batch norm folded in") { rng in
      let x = Tensor.randomNormal([2, 4, 9, 9], using: &rng)
      let weight = Tensor.randomNormal([6, 4, 3, 3], using: &rng)
      let bias = Tensor.randomNormal([6], using: &rng)
      let (gamma, beta) = (
        Tensor.randomNormal([6], using: &rng), Tensor.randomNormal([6], using: &rng)
      )
      let mean = Tensor.randomNormal([6], using: &rng)
      let variance = Tensor.randomUniform([6], low: 0.5, high: 2, using: &rng)
      return [
        (
          "output",
          try withoutGradients {
            try Tensor.conv2dThenBatchNormEvaluation(
              x, weight: weight, bias: bias, padding: 1, batchNormWeight: gamma,
              batchNormBias: beta,
              runningMean: mean, runningVariance: variance, epsilon: 1e-5)
          }
        )
      ]
    }
    try expectAgreement("avgPool2d 3/2/1") { rng in
      try forwardBackward([[2, 3, 9, 9]], rng: &rng) {
        try Tensor.avgPool2d($0[0], kernelSize: 3, stride: 2, padding: 1)
      }
    }
    try expectAgreement("spatialMean") { rng in
      try forwardBackward([[2, 3, 5, 7]], rng: &rng) { try $0[0].spatialMean() }
    }
  }

  @Test func linearAlgebraAndLoss() throws {
    try expectAgreement("linear") { rng in
      try forwardBackward([[4, 9], [5, 9], [5]], rng: &rng) {
        try Tensor.linear($0[0], weight: $0[1], bias: $0[2])
      }
    }
    try expectAgreement("matmul") { rng in
      try forwardBackward([[4, 9], [9, 3]], rng: &rng) { try Tensor.matmul($0[0], $0[1]) }
    }
    try expectAgreement("crossEntropy") { rng in
      try forwardBackward([[4, 10]], rng: &rng) {
        try Tensor.crossEntropy(logits: $0[0].scaled(3), labels: [0, 9, 3, 3], labelSmoothing: 0.1)
      }
    }
  }

  @Test func shapesAndElementwise() throws {
    try expectAgreement("split, concat, narrow") { rng in
      try forwardBackward([[2, 6, 3, 3], [2, 2, 3, 3]], rng: &rng) {
        let (even, odd) = try $0[0].splitChannelsByParity()
        let mixed = try Tensor.concatChannels([odd, $0[1], even.narrowChannels(start: 1, count: 2)])
        return try mixed.narrowBatch(start: 1, count: 1)
      }
    }
    try expectAgreement("broadcast arithmetic") { rng in
      try forwardBackward([[2, 3, 4], [3, 1], [4]], rng: &rng) {
        try ((($0[0] * $0[1]) - $0[2]) + $0[1]).relu().sigmoid().adding(0.5).scaled(2)
      }
    }
    try expectAgreement("sum and mean") { rng in
      try forwardBackward([[3, 4]], rng: &rng) { try $0[0].sum() + $0[0].mean() }
    }
  }

  @Test func optimizerSteps() throws {
    try expectAgreement("sgd and adam") { rng in
      let (p, q) = (
        Parameter(Tensor.randomNormal([40], using: &rng)),
        Parameter(Tensor.randomNormal([40], using: &rng))
      )
      let buffer = Tensor.zeros([40])
      let (m, v) = (Tensor.zeros([40]), Tensor.zeros([40]))
      for step in 1...3 {
        let g = Tensor.randomNormal([40], using: &rng)
        p.sgdStep(
          gradient: g, momentumBuffer: buffer, learningRate: 0.1, momentum: 0.9,
          weightDecay: 1e-2, firstStep: step == 1)
        q.adamStep(
          gradient: g, firstMoment: m, secondMoment: v, learningRate: 0.01, beta1: 0.9,
          beta2: 0.999, epsilon: 1e-8, weightDecay: 1e-2, decoupled: step == 2, step: step)
      }
      return [
        ("sgd parameter", p.value), ("momentum", buffer), ("adam parameter", q.value), ("m", m),
        ("v", v),
      ]
    }
  }

  /// Dropout masks are the backend's own (a different generator), so the reference backend's
  /// dropout is checked for what it must do rather than against the CPU backend's mask.
  @Test func dropoutOnTheReferenceBackend() throws {
    try withDefaultDevice(reference) {
      var rng = RandomGenerator(seed: 1)
      let x = Parameter(Tensor.randomUniform([1000], low: 1, high: 2, using: &rng))
      let y = try x.value.dropout(probability: 0.3, training: true, using: &rng)
      try y.backward(seed: Tensor.ones([1000]))
      let (ys, xs, gs) = (y.scalars, x.value.scalars, try #require(x.grad).scalars)
      let kept = (0..<1000).filter { ys[$0] != 0 }
      #expect(y.device == reference)
      #expect(kept.allSatisfy { abs(ys[$0] - xs[$0] / 0.7) < 1e-5 && abs(gs[$0] - 1 / 0.7) < 1e-5 })
      #expect((0..<1000).filter { ys[$0] == 0 }.allSatisfy { gs[$0] == 0 })
      #expect(kept.count > 620 && kept.count < 780)
    }
  }

  @Test func tensorsKnowTheirDevice() throws {
    let x = withDefaultDevice(reference) { Tensor.ones([2, 3]) }
    #expect(x.device == reference)
    #expect(Tensor.ones([2]).device == .cpu)
    // Ops follow their inputs, not the default device.
    #expect(x.relu().device == reference)
    #expect(x.to(.cpu).device == .cpu)
    #expect(x.to(.cpu).scalars == x.scalars)
    #expect("\(reference)" == "reference" && "\(Device.cpu)" == "cpu")
  }
}
