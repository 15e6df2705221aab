import ACONNN
import ACONTensor
import ACONTraining
import Testing

/// Trajectories from scripts/golden/optimizers.py (PyTorch 2.15, float64): three steps on the
/// gradient g(p) = p^3 - 1 with learning rates 0.1, 0.05, 0.02 and weight decay 0.1.
@Suite("Optimizers")
struct OptimizerTests {
  let start: [Float] = [0.5, -1.0, 2.0, 0.0]
  let rates: [Float] = [0.1, 0.05, 0.02]

  func run(_ make: ([ParameterGroup]) -> Optimizer) -> [Float] {
    let p = Parameter(Tensor(shape: [4], values: start), decays: true)
    let optimizer = make([ParameterGroup(parameters: [("p", p)], weightDecay: 0.1)])
    for lr in rates {
      optimizer.zeroGrad()
      p.grad = Tensor(shape: [4], values: p.value.scalars.map { $0 * $0 * $0 - 1 })
      optimizer.step(learningRate: lr)
    }
    return p.value.scalars
  }

  func expectClose(_ a: [Float], _ b: [Float], tolerance: Float = 2e-6) {
    #expect(a.count == b.count)
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= tolerance, "\(a) vs \(b)") }
  }

  @Test func sgdMatchesPyTorch() {
    expectClose(
      run { SGD(groups: $0, momentum: 0.9) }, [0.6966079, -0.5286522, 0.7599342, 0.2479161])
  }

  @Test func adamMatchesPyTorch() {
    expectClose(run { Adam(groups: $0) }, [0.6694871, -0.8305409, 1.8307216, 0.1699714])
  }

  @Test func adamWMatchesPyTorch() {
    expectClose(
      run { Adam(groups: $0, decoupled: true) }, [0.6603698, -0.8145021, 1.7979379, 0.1691973])
  }

  @Test func stateRoundTripContinuesIdentically() throws {
    let p = Parameter(Tensor(shape: [4], values: start))
    let q = Parameter(Tensor(shape: [4], values: start))
    let a = SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0)])
    let b = SGD(groups: [ParameterGroup(parameters: [("w", q)], weightDecay: 0)])
    p.grad = Tensor(shape: [4], values: [1, 2, 3, 4])
    q.grad = p.grad
    a.step(learningRate: 0.1)
    b.step(learningRate: 0.1)
    // Restart b from a's saved state: the next steps must agree exactly.
    let saved = Dictionary(uniqueKeysWithValues: a.stateTensors())
    let c = SGD(groups: [ParameterGroup(parameters: [("w", q)], weightDecay: 0)])
    try c.loadState(saved)
    c.stepCount = a.stepCount
    p.grad = Tensor(shape: [4], values: [-1, 0.5, 2, 0])
    q.grad = p.grad
    a.step(learningRate: 0.05)
    c.step(learningRate: 0.05)
    #expect(p.value.scalars == q.value.scalars)
  }

  @Test func schedulesFollowTheRecipe() {
    let linear = LearningRateSchedule(baseRate: 0.5, decay: .linear, totalIterations: 100)
    #expect(linear.rate(at: 0) == 0.5)
    #expect(abs(linear.rate(at: 50) - 0.25) < 1e-7)
    #expect(linear.rate(at: 100) == 0)
    #expect(linear.rate(at: 150) == 0)
    let cosine = LearningRateSchedule(
      baseRate: 1, decay: .cosine, totalIterations: 10, warmupIterations: 2)
    #expect(cosine.rate(at: 0) == 0.5)
    #expect(cosine.rate(at: 1) == 1)
    #expect(abs(cosine.rate(at: 6) - 0.5) < 1e-6)
  }

  @Test func referenceGroupsSeparateDecayingWeights() {
    final class Tiny: Module {
      override init() {
        super.init()
        register(parameter: Parameter(Tensor.zeros([3, 3]), decays: true), as: "weight")
        register(parameter: Parameter(Tensor.zeros([1, 3, 1, 1])), as: "p1")
        register(parameter: Parameter(Tensor.zeros([3])), as: "bias")
      }
    }
    let groups = ParameterGroup.referenceGroups(of: Tiny(), weightDecay: 4e-5)
    #expect(groups[0].parameters.map(\.name) == ["weight"])
    #expect(groups[0].weightDecay == 4e-5)
    #expect(groups[1].parameters.map(\.name) == ["p1", "bias"])
    #expect(groups[1].weightDecay == 0)
  }

  @Test func metricsCountTopK() {
    var m = ClassificationMetrics()
    let logits = Tensor(shape: [2, 6], values: [0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0])
    m.add(loss: 1.5, logits: logits, labels: [5, 5])
    #expect(m.top1 == 0.5)
    #expect(m.top5 == 0.5)
    #expect(m.loss == 1.5)
  }
}
