import ACONNN
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

@Suite("Standard layers")
struct LayersTests {
  @Test func batchNormStateFollowsPyTorch() throws {
    let bn = BatchNorm2d(3)
    #expect(
      bn.stateEntries().map(\.name)
        == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
    #expect(bn.namedParameters().map(\.0) == ["weight", "bias"])
    #expect(bn.parameters.allSatisfy { !$0.decays })
    #expect(bn.weight.value.scalars == [1, 1, 1])
    #expect(bn.bias.value.scalars == [0, 0, 0])
    let buffers = bn.namedBuffers()
    #expect(buffers.map(\.0) == ["running_mean", "running_var", "num_batches_tracked"])
    #expect(buffers.map(\.1.storedAsInteger) == [false, false, true])
    #expect(bn.runningMean.value.scalars == [0, 0, 0])
    #expect(bn.runningVariance.value.scalars == [1, 1, 1])
    #expect(bn.batchesTracked.value.shape == [])
    #expect(bn.batchesTracked.value.item == 0)
    #expect(bn.epsilon == 1e-5)
    #expect(bn.momentum == 0.1)
  }

  @Test func batchNormTrainEvalSwitching() throws {
    var rng = RandomGenerator(seed: 1)
    let bn = BatchNorm2d(2)
    let x = Tensor.randomNormal([4, 2, 3, 3], mean: 2, std: 3, using: &rng)
    #expect(bn.isTraining)
    let y = try bn(x)
    #expect(bn.batchesTracked.value.item == 1)
    // Training output has zero mean per channel; the running mean moved a tenth of the way.
    for ch in 0..<2 {
      var s: Float = 0
      var batch: Float = 0
      for b in 0..<4 {
        for i in 0..<9 {
          s += y.data[(b * 2 + ch) * 9 + i]
          batch += x.data[(b * 2 + ch) * 9 + i]
        }
      }
      #expect(abs(s / 36) < 1e-5)
      #expect(abs(bn.runningMean.value.data[ch] - 0.1 * batch / 36) < 1e-5)
    }
    _ = try bn(x)
    #expect(bn.batchesTracked.value.item == 2)

    bn.eval()
    #expect(!bn.isTraining)
    let statistics = (bn.runningMean.value.scalars, bn.runningVariance.value.scalars)
    let ye = try bn(x)
    #expect(bn.batchesTracked.value.item == 2)
    #expect(bn.runningMean.value.scalars == statistics.0)
    #expect(bn.runningVariance.value.scalars == statistics.1)
    let m = statistics.0
    let v = statistics.1
    let i = 5  // batch 0, channel 0
    #expect(abs(ye.data[i] - (x.data[i] - m[0]) / (v[0] + 1e-5).squareRoot()) < 1e-5)
    bn.train()
    #expect(bn.isTraining)
  }

  @Test func batchNormAcceptsRankTwoAndRejectsBadInput() throws {
    let bn = BatchNorm2d(4)
    var rng = RandomGenerator(seed: 2)
    #expect(try bn(Tensor.randomNormal([5, 4], using: &rng)).shape == [5, 4])
    #expect(throws: TensorError.self) { try bn(Tensor.zeros([2, 3, 4, 4])) }
    #expect(throws: TensorError.self) { try bn(Tensor.zeros([2, 4, 4])) }
    do {
      _ = try bn(Tensor.zeros([1, 4, 1, 1]))
      Issue.record("trained on one value per channel")
    } catch let e as TensorError {
      #expect(e.description.contains("more than 1 value per channel"))
    }
    // A failed forward counts no batch.
    #expect(bn.batchesTracked.value.item == 1)
    bn.eval()
    #expect(try bn(Tensor.zeros([1, 4, 1, 1])).shape == [1, 4, 1, 1])
  }

  @Test func batchNormGradientsReachItsParameters() throws {
    var rng = RandomGenerator(seed: 3)
    let bn = BatchNorm2d(3)
    let x = Tensor.randomNormal([2, 3, 4, 4], using: &rng)
    let r = Tensor.randomNormal([2, 3, 4, 4], using: &rng)
    try (bn(x) * r).sum().backward()
    #expect(bn.weight.grad?.shape == [3])
    #expect(bn.bias.grad?.shape == [3])
    // dbias = sum(r) per channel.
    for ch in 0..<3 {
      var s: Float = 0
      for b in 0..<2 { for i in 0..<16 { s += r.data[(b * 3 + ch) * 16 + i] } }
      #expect(abs(bn.bias.grad!.data[ch] - s) < 1e-4)
    }
  }

  @Test func batchNormWithFusedReLU() throws {
    var rng = RandomGenerator(seed: 13)
    let x = Tensor.randomNormal([3, 2, 4, 4], using: &rng)
    let (fused, plain) = (BatchNorm2d(2), BatchNorm2d(2))
    let a = try fused.forwardWithReLU(x)
    let b = try ReLU()(plain(x))
    #expect(a.scalars == b.scalars)
    #expect(fused.batchesTracked.value.item == 1)
    #expect(fused.runningMean.value.scalars == plain.runningMean.value.scalars)
    fused.eval()
    plain.eval()
    #expect(try fused.forwardWithReLU(x).scalars == ReLU()(plain(x)).scalars)
  }

  @Test func linearStateInitAndForward() throws {
    var rng = RandomGenerator(seed: 4)
    let fc = Linear(inputFeatures: 50, outputFeatures: 20, using: &rng)
    #expect(fc.stateEntries().map(\.name) == ["weight", "bias"])
    #expect(fc.weight.value.shape == [20, 50])
    #expect(fc.bias?.value.shape == [20])
    #expect(fc.weight.decays)
    #expect(fc.bias?.decays == false)
    let bound = 1 / Float(50).squareRoot()
    let w = fc.weight.value.scalars
    #expect(w.allSatisfy { abs($0) <= bound })
    // Uniform over the whole range, not a narrow slice of it.
    #expect(w.max()! > 0.9 * bound && w.min()! < -0.9 * bound)
    #expect(fc.bias!.value.scalars.allSatisfy { abs($0) <= bound })
    // The same seed gives the same layer; the generator advanced.
    let again = Linear(inputFeatures: 50, outputFeatures: 20, seed: 4)
    #expect(again.weight.value.scalars == w)
    #expect(rng != RandomGenerator(seed: 4))

    let x = Tensor.randomNormal([3, 50], using: &rng)
    let y = try fc(x)
    #expect(y.shape == [3, 20])
    var expected = Double(fc.bias!.value.data[7])
    for k in 0..<50 { expected += Double(x.data[50 + k]) * Double(w[7 * 50 + k]) }
    #expect(abs(Double(y.data[20 + 7]) - expected) < 1e-4)
    #expect(throws: TensorError.self) { try fc(Tensor.zeros([3, 49])) }
    #expect(throws: TensorError.self) { try fc(Tensor.zeros([3, 5, 10])) }

    let noBias = Linear(inputFeatures: 4, outputFeatures: 2, bias: false, seed: 1)
    #expect(noBias.bias == nil)
    #expect(noBias.stateEntries().map(\.name) == ["weight"])
  }

  @Test func conv2dStateInitAndForward() throws {
    var rng = RandomGenerator(seed: 12)
    let conv = Conv2d(
      inputChannels: 6, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1, groups: 2,
      using: &rng)
    #expect(conv.stateEntries().map(\.name) == ["weight", "bias"])
    #expect(conv.weight.value.shape == [4, 3, 3, 3])
    #expect(conv.bias?.value.shape == [4])
    #expect(conv.weight.decays)
    #expect(conv.bias?.decays == false)
    let bound = 1 / Float(3 * 9).squareRoot()
    let w = conv.weight.value.scalars
    #expect(w.allSatisfy { abs($0) <= bound })
    #expect(w.max()! > 0.8 * bound && w.min()! < -0.8 * bound)
    #expect(conv.bias!.value.scalars.allSatisfy { abs($0) <= bound })
    let again = Conv2d(
      inputChannels: 6, outputChannels: 4, kernelSize: 3, stride: 2, padding: 1, groups: 2,
      seed: 12)
    #expect(again.weight.value.scalars == w)
    #expect(again.bias!.value.scalars == conv.bias!.value.scalars)

    let x = Tensor.randomNormal([2, 6, 7, 7], using: &rng)
    let y = try conv(x)
    #expect(y.shape == [2, 4, 4, 4])
    let direct = try Tensor.conv2d(
      x, weight: conv.weight.value, bias: conv.bias!.value, stride: 2, padding: 1, groups: 2)
    #expect(y.scalars == direct.scalars)
    // One output by hand: sample 1, output channel 3 (group 1: input channels 3..<6), (2, 1).
    var expected = Double(conv.bias!.value.data[3])
    for ci in 0..<3 {
      for kh in 0..<3 {
        for kw in 0..<3 {
          let (r, c) = (2 * 2 - 1 + kh, 2 * 1 - 1 + kw)
          guard r >= 0, r < 7, c >= 0, c < 7 else { continue }
          expected +=
            Double(x.data[((1 * 6 + 3 + ci) * 7 + r) * 7 + c])
            * Double(w[((3 * 3 + ci) * 3 + kh) * 3 + kw])
        }
      }
    }
    #expect(abs(Double(y.data[((1 * 4 + 3) * 4 + 2) * 4 + 1]) - expected) < 1e-4)
    try y.sum().backward()
    #expect(conv.weight.grad?.shape == [4, 3, 3, 3])
    #expect(conv.bias?.grad?.scalars == [32, 32, 32, 32])
    #expect(throws: TensorError.self) { try conv(Tensor.zeros([2, 5, 7, 7])) }
    #expect(throws: TensorError.self) { try conv(Tensor.zeros([6, 7, 7])) }

    let plain = Conv2d(inputChannels: 3, outputChannels: 8, kernelSize: 1, bias: false, seed: 1)
    #expect(plain.bias == nil)
    #expect(plain.stateEntries().map(\.name) == ["weight"])
    #expect(plain.weight.value.scalars.allSatisfy { abs($0) <= 1 / Float(3).squareRoot() })
  }

  @Test func poolingLayers() throws {
    var rng = RandomGenerator(seed: 5)
    let x = Tensor.randomNormal([2, 3, 9, 10], using: &rng)
    let maxPool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    #expect(maxPool.stateEntries().isEmpty)
    #expect(
      try maxPool(x).scalars == Tensor.maxPool2d(x, kernelSize: 3, stride: 2, padding: 1).scalars)
    #expect(try maxPool(x).shape == [2, 3, 5, 5])
    let avgPool = AvgPool2d(kernelSize: 2)
    #expect(avgPool.stride == 2)
    #expect(try avgPool(x).shape == [2, 3, 4, 5])
    #expect(throws: TensorError.self) { try MaxPool2d(kernelSize: 11)(x) }
    #expect(throws: TensorError.self) { try AvgPool2d(kernelSize: 2)(Tensor.zeros([3, 4, 4])) }

    let gap = GlobalAveragePool2d()
    let g = try gap(x)
    #expect(g.shape == [2, 3, 1, 1])
    var s: Float = 0
    for i in 0..<90 { s += x.data[90 + i] }
    #expect(abs(g.data[1] - s / 90) < 1e-5)
    #expect(try gap(Tensor.zeros([1, 2, 1, 1])).shape == [1, 2, 1, 1])
    #expect(throws: TensorError.self) { try gap(Tensor.zeros([2, 3])) }
  }

  @Test func flattenReluIdentity() throws {
    var rng = RandomGenerator(seed: 6)
    let x = Tensor.randomNormal([2, 3, 4, 5], using: &rng)
    let f = try Flatten()(x)
    #expect(f.shape == [2, 60])
    #expect(f.scalars == x.scalars)
    #expect(throws: TensorError.self) { try Flatten()(Tensor(scalar: 1)) }
    #expect(try ReLU()(x).scalars == x.scalars.map { max($0, 0) })
    #expect(try Identity()(x).scalars == x.scalars)
  }

  @Test func dropoutLayerTrainAndEval() throws {
    let x = Tensor(shape: [64, 32], repeating: 1)
    let drop = Dropout(probability: 0.25, seed: 7)
    #expect(drop.stateEntries().isEmpty)
    let a = try drop(x)
    let b = try drop(x)
    #expect(a.scalars != b.scalars)
    #expect(a.scalars.allSatisfy { $0 == 0 || abs($0 - 1 / 0.75) < 1e-6 })
    #expect(try Dropout(probability: 0.25, seed: 7)(x).scalars == a.scalars)
    drop.eval()
    #expect(try drop(x).scalars == x.scalars)
  }

  @Test func modeAndNamesPropagateThroughSequential() throws {
    var rng = RandomGenerator(seed: 8)
    let net = Sequential([
      Conv2d(inputChannels: 3, outputChannels: 3, kernelSize: 1, bias: false, using: &rng),
      Flatten(), Linear(inputFeatures: 12, outputFeatures: 6, using: &rng), BatchNorm2d(6),
      ReLU(), Dropout(probability: 0.5, seed: 1), Identity(),
    ])
    #expect(
      net.stateEntries().map(\.name) == [
        "0.weight", "2.weight", "2.bias", "3.weight", "3.bias", "3.running_mean", "3.running_var",
        "3.num_batches_tracked",
      ])
    let x = Tensor.randomNormal([4, 3, 2, 2], using: &rng)
    #expect(try net(x).shape == [4, 6])
    net.eval()
    #expect(net.namedModules().allSatisfy { !$0.1.isTraining })
    let y1 = try net(x)
    let y2 = try net(x)
    #expect(y1.scalars == y2.scalars)
    net.train()
    #expect(net.namedModules().allSatisfy { $0.1.isTraining })
  }
}
