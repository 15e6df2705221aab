import ACONNN
import ACONTensor
import ArgumentParser
import Foundation

/// Builds a small network, runs one forward and backward step and prints what it did.
struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run one forward and backward step of a small network and print what happened.")

  @Option(help: "Batch size.") var batchSize = 8
  @Option(help: "Random seed.") var seed: UInt64 = 0

  func run() throws {
    var rng = RandomGenerator(seed: seed)
    let w1 = Parameter(Tensor.randomNormal([32, 784], std: 0.05, using: &rng), decays: true)
    let w2 = Parameter(Tensor.randomNormal([10, 32], std: 0.1, using: &rng), decays: true)
    let x = Tensor.randomUniform([batchSize, 784], using: &rng)
    let labels = (0..<batchSize).map { $0 % 10 }
    let start = Date()
    let hidden = try Tensor.linear(x, weight: w1.value, bias: nil).relu()
    let logits = try Tensor.linear(hidden, weight: w2.value, bias: nil)
    let loss = try Tensor.crossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1)
    try loss.backward()
    let seconds = Date().timeIntervalSince(start)
    print("forward + backward of a 784-32-10 network on \(batchSize) samples")
    print(String(format: "loss %.4f, |grad W1| %.4f, |grad W2| %.4f, %.2f ms", loss.item,
                 norm(w1.grad!), norm(w2.grad!), seconds * 1000))
  }

  private func norm(_ t: Tensor) -> Float { t.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot() }
}
