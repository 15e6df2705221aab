// Trains a tiny ACON network for a few steps through the public API and prints its loss.
import ACONNN
import ACONTensor
import ACONTraining

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

var rng = RandomGenerator(seed: 7)
let model = Sequential([
  Conv2d(inputChannels: 1, outputChannels: 8, kernelSize: 3, padding: 1, bias: false, using: &rng),
  BatchNorm2d(8),
  AconC(channels: 8, using: &rng),
  Conv2d(
    inputChannels: 8, outputChannels: 16, kernelSize: 3, stride: 2, padding: 1, bias: false,
    using: &rng),
  BatchNorm2d(16),
  MetaAconC(channels: 16, reduction: 4, using: &rng),
  GlobalAveragePool2d(),
  Flatten(),
  Linear(inputFeatures: 16, outputFeatures: 2, using: &rng),
])
print(model)

// Two classes a network can tell apart: bright images and dark ones.
let batch = 32
let labels = (0..<batch).map { $0 % 2 }
var pixels: [Float] = []
for label in labels {
  for _ in 0..<(8 * 8) { pixels.append(rng.nextUniform() * 0.5 + (label == 1 ? 0.5 : 0)) }
}
let images = Tensor(shape: [batch, 1, 8, 8], values: pixels)

let optimizer = SGD(
  groups: ParameterGroup.referenceGroups(of: model, weightDecay: 4e-5), momentum: 0.9)
model.train()
var losses: [Float] = []
do {
  for step in 1...20 {
    let loss = try Tensor.crossEntropy(logits: try model(images), labels: labels)
    try loss.backward()
    optimizer.step(learningRate: 0.1)
    optimizer.zeroGrad()
    losses.append(loss.item)
    print("step \(step): loss \(loss.item)")
  }
} catch {
  print("error: \(error)")
  exit(1)
}
// The check this example is run for: the library trains, so the loss falls.
guard let first = losses.first, let last = losses.last, last < 0.5 * first else {
  print("error: the loss did not fall by half in 20 steps: \(losses)")
  exit(1)
}
print("loss \(losses[0]) -> \(last)")
