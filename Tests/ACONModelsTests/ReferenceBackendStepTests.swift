import ACONModels
import ACONNN
import ACONTensor
import ACONTestSupport
import ACONTraining
import Testing

/// A whole ShuffleNetV2-0.5x training step (forward, label-smoothed cross-entropy, backward,
/// SGD with momentum and weight decay) on the scalar reference backend against the CPU backend,
/// from the same weights and batch: the loss, the logits, every parameter's gradient, every
/// parameter after the step and every running statistic.
///
/// Tolerance 2e-4 of each tensor's largest magnitude with ACON-C (smooth): the CPU backend's
/// Float32 kernels (Winograd and BLAS products, SIMD sums) against Float64 sums through some 60
/// layers (seen: 2e-5 to 1e-4). 2e-2 with ReLU: an activation whose input lies within rounding
/// of 0 takes the other branch on the other backend (about one in 10^5 here), which moves the
/// gradients of every layer before it (seen: 7e-3).
@Suite struct ReferenceBackendStepTests {
  let reference = ReferenceBackend.device

  /// Every tensor a training step produces, on the default device.
  func trainingStep(
    _ configuration: ModelConfiguration, fusion: Bool, rng: inout RandomGenerator
  ) throws -> [(String, Tensor)] {
    let model = try ModelZoo.make(configuration, seed: 5)
    // The reference stem divides by 32: at 64 px the last stage's batch norms still see 8 values
    // per channel (at 2, a channel whose two values nearly coincide has a batch variance near 0
    // and amplifies rounding by 1 / sqrt(epsilon)); the small-input stem divides by 8.
    let size = configuration.smallInput ? 32 : 64
    let x = Tensor.randomNormal([2, configuration.inputChannels, size, size], using: &rng)
    let labels = [3, 8]
    let optimizer = SGD(groups: ParameterGroup.referenceGroups(of: model, weightDecay: 4e-5))
    let run = {
      let logits = try model(x)
      let loss = try Tensor.crossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1)
      try loss.backward()
      return (logits, loss)
    }
    let (logits, loss) = fusion ? try run() : try withoutLayerFusion(run)
    var tensors = [("loss", loss), ("logits", logits)]
    for (name, p) in model.namedParameters() {
      tensors.append(("grad " + name, try #require(p.grad, "\(name) has no gradient")))
    }
    optimizer.step(learningRate: 0.1)
    tensors += model.namedParameters().map { ("after step " + $0.0, $0.1.value) }
    tensors += model.namedBuffers().map { ("buffer " + $0.0, $0.1.value) }
    return tensors
  }

  @Test(arguments: [
    // The reference stem (stride-2 convolution, max-pool) and the small-input stem.
    ("acon-c", false, true), ("acon-c", true, true), ("relu", false, true),
    ("acon-c", false, false),
    // meta-ACON through the fused batch norm + ACON with a generator; the BatchNorm-free generator
    // (the reference's meta-ACON normalises 2 values per channel at batch 2, ill-conditioned).
    ("meta-acon-bs1", false, true),
  ])
  func shuffleNetStepAgrees(activation: String, smallInput: Bool, fusion: Bool) throws {
    let configuration = ModelConfiguration(
      model: "shufflenetv2-0.5x", activation: activation, classes: 10, inputChannels: 3,
      smallInput: smallInput)
    let check = BackendComparison(tolerance: activation == "relu" ? 2e-2 : 2e-4)
    let (messages, worst) = try check.failures(reference: reference) { rng in
      try trainingStep(configuration, fusion: fusion, rng: &rng)
    }
    #expect(messages.isEmpty, "\(messages.prefix(8).joined(separator: "\n")) (worst \(worst))")
    print(
      "ShuffleNetV2-0.5x \(activation) small input \(smallInput) fusion \(fusion): worst scaled difference \(worst)"
    )
  }
}
