import ACONKernels
import ACONModels
import ACONNN
import ACONTensor
import ACONTraining
import ArgumentParser
import Foundation

/// `acon bench`: median step time, throughput and peak memory of a whole network.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Benchmark a network: median train step (forward, backward, SGD) or inference step on random input."
  )

  @Option(help: "Batch size.") var batchSize = 32
  @OptionGroup var network: NetworkOptions
  @Option(help: "Timed steps.") var steps = 10
  @Option(help: "Untimed warm-up steps.") var warmup = 2
  @Option(help: "train: forward, backward and an SGD step; infer: an eval-mode forward.") var mode =
    BenchMode.train
  @Flag(help: "Print one JSON object as the last line.") var json = false
  @Flag(help: "Run every batch norm and the activation after it as separate layers (no fusion).")
  var noFusion = false
  @Flag(
    help:
      "Run 3x3 stride-1 convolutions as matrix products of the unfolded input instead of Winograd's F(2x2, 3x3)."
  )
  var noWinograd = false
  @Flag(
    help:
      "Time every op kind through the tape (forward, backward, optimizer) and print a table per step (as ACON_PROFILE=1 does)."
  )
  var profile = false

  func run() throws {
    let winograd: (inout KernelOptions) -> Void = { $0.usesWinograd = !noWinograd }
    try KernelOptions.with(changing: winograd) {
      try Profiler.recording(profile || Profiler.isEnabled, measure)
    }
  }

  private func measure() throws {
    let (model, activation, inputSize, classes, inputChannels) = (
      network.model.name, network.activation.rawValue, network.inputSize, network.classes,
      network.inputChannels
    )
    guard steps >= 1, warmup >= 0, batchSize >= 1, inputSize >= 1 else {
      throw CLIError(
        "--steps, --batch-size and --input-size must be positive, --warmup non-negative")
    }
    let config = network.configuration
    let network = try ModelZoo.make(config)
    var rng = RandomGenerator(seed: 1)
    let x = Tensor.randomUniform(
      [batchSize, inputChannels, inputSize, inputSize], low: 0, high: 1, using: &rng)
    let labels = (0..<batchSize).map { $0 % classes }
    let optimizer = SGD(
      groups: ParameterGroup.referenceGroups(of: network, weightDecay: 4e-5), momentum: 0.9)
    func step() throws {
      if noFusion { try withoutLayerFusion(stepLayers) } else { try stepLayers() }
    }
    func stepLayers() throws {
      Profiler.mark()
      if mode == .train {
        network.train()
        let logits = try network(x)
        let loss = try Tensor.crossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1)
        try Profiler.time("step", "backward (all)") { try loss.backward() }
        Profiler.time("optimizer", "sgd") {
          optimizer.step(learningRate: 0.01)
          optimizer.zeroGrad()
        }
      } else {
        network.eval()
        _ = try withoutGradients { try network(x) }
      }
    }
    for _ in 0..<warmup { try step() }
    Profiler.reset()
    let allocationsBefore = BufferPool.shared.systemAllocations
    var times: [Double] = []
    for _ in 0..<steps {
      let start = DispatchTime.now().uptimeNanoseconds
      try step()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    times.sort()
    let median =
      times.count % 2 == 1
      ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
    let rss = peakResidentBytes()
    // Steady state should allocate nothing: every buffer comes back from the pool.
    let allocations = BufferPool.shared.systemAllocations - allocationsBefore
    if Profiler.isEnabled { printProfile(steps: steps, median: median) }
    print(
      String(
        format:
          "%@ %@ %@ batch %d at %dx%d: median step %.1f ms (min %.1f, max %.1f over %d), %.1f images/s, peak RSS %.0f MB",
        model, activation, mode.rawValue, batchSize, inputSize, inputSize, median * 1000,
        times.first! * 1000,
        times.last! * 1000, steps, Double(batchSize) / median, Double(rss) / 1e6)
        + ", \(allocations) buffer allocations in the timed steps, kernels for "
        + InstructionSet.compiled.displayName)
    if json {
      let object: [String: Any] = [
        "model": model, "activation": activation, "mode": mode.rawValue, "batch_size": batchSize,
        "input_size": inputSize, "steps": steps, "step_seconds_median": median,
        "images_per_second": Double(batchSize) / median, "peak_rss_bytes": rss,
        "timed_system_allocations": allocations,
        "instruction_set": InstructionSet.compiled.rawValue,
      ]
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
    }
  }
}

/// Prints the profile's totals per step, largest first, with their share of the median step.
func printProfile(steps: Int, median: Double) {
  let entries = Profiler.entries()
  print(
    "profile (ms per step; forward = time since the previous recorded op; share of the median step):"
  )
  print("  phase      op                         ms/step  calls/step  share")
  for e in entries {
    let ms = e.seconds * 1000 / Double(steps)
    print(
      String(
        format: "  %-10@ %-26@ %8.2f  %10.1f  %5.1f%%", e.phase, e.operation, ms,
        Double(e.calls) / Double(steps), 100 * ms / (median * 1000)))
  }
}

/// Peak resident set size of this process (VmHWM), in bytes.
func peakResidentBytes() -> Int {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
    return 0
  }
  for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
    let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
    return kb * 1024
  }
  return 0
}
