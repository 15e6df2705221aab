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
      "Run 3x3 stride-1 convolutions as matrix products of the unfolded input instead of Winograd's minimal filtering."
  )
  var noWinograd = false
  @Option(
    help:
      "Winograd's output tile for every 3x3 stride-1 layer: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)); default: chosen per layer."
  )
  var winogradTile: WinogradTileOption?
  @Flag(
    help:
      "Time every op kind through the tape (forward, backward, optimizer) and print a table per step (as ACON_PROFILE=1 does)."
  )
  var profile = false
  @Flag(
    help: """
      Print the step's budget as a Markdown table: per op kind the measured time beside its \
      floor at the matrix-product and copy rates measured first in the same process.
      """)
  var budget = false

  func run() throws {
    let winograd: (inout KernelOptions) -> Void = {
      $0.usesWinograd = !noWinograd
      if let winogradTile { $0.winogradTile = winogradTile.rawValue }
    }
    try KernelOptions.with(changing: winograd) {
      try Profiler.recording(profile || budget || Profiler.isEnabled, measure)
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
    // The ceilings first, before the network's buffers take memory and cache.
    // (Their buffers go back to the system; the peak RSS printed then includes them.)
    let rates = budget ? try MachineRates.measure() : nil
    if budget { BufferPool.shared.trim() }
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
    if profile || (Profiler.isEnabled && !budget) { printProfile(steps: steps, median: median) }
    if let rates {
      let title =
        "\(model) \(activation) \(mode.rawValue) batch \(batchSize) at \(inputSize)x\(inputSize)"
      let mean = times.reduce(0, +) / Double(times.count)
      printBudget(title: title, steps: steps, median: median, mean: mean, rates: rates)
    }
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

/// The machine's matrix-product and copy rates, measured in this process with the engine's own
/// paths (`acon bench-op`'s `sgemm 1024` and its copy at batch 8, a 103 MB buffer: larger than
/// the last-level caches of the machines measured; fastest of 5): the ceilings of a budget.
struct MachineRates {
  var sgemmGigaflops: Double
  var copyGigabytes: Double

  static func measure() throws -> MachineRates {
    let op = try BenchOp.parse(["--runs", "5", "--best", "--batch", "8"])
    let sgemm = try op.benchSgemm(1024).gflops ?? 0
    let copy = try op.benchCopy().gigabytes ?? 0
    return MachineRates(sgemmGigaflops: sgemm, copyGigabytes: copy)
  }
}

/// Prints where a step's time goes as a Markdown table: per op kind (convolutions by kernel
/// path, the other ops by their tape name) the measured forward and backward time per step,
/// the work it must do, and its floor: the larger of its FLOPs at the measured sgemm rate and
/// its bytes at the measured copy rate (each op alone, unfused: see ``Profiler/Entry``). The
/// last rows are what no op accounts for (module glue, the loss, untracked copies) and the
/// whole step. The op times are means over the timed steps, so the rest is taken from the mean
/// step (on a busy machine a slow step moves the mean away from the median).
func printBudget(title: String, steps: Int, median: Double, mean: Double, rates: MachineRates) {
  struct Row {
    var forward = 0.0, backward = 0.0, flops = 0.0, bytes = 0.0
    var floor: Double = 0
  }
  var rows: [String: Row] = [:]
  // The tape entries of convolutions (conv2d, and batchNorm_conv1x1: a batch norm folded into
  // a 1x1 layer) hold the kernel time (rows by path, the folded batch norm's its own) plus
  // their glue, counted apart.
  var convolutionTape = 0.0
  var convolutionKernels = 0.0
  for e in Profiler.entries() {
    let perStep = e.seconds / Double(steps)
    let name: String
    switch e.phase {
    case "kernel fwd", "kernel bwd":
      name = e.operation
      convolutionKernels += perStep
    case "forward", "backward":
      if e.operation == "conv2d" || e.operation.hasPrefix("batchNorm_conv1x1") {
        convolutionTape += perStep
        continue
      }
      name = e.operation
    case "optimizer":
      name = "optimizer " + e.operation
    default:
      continue  // "step": the whole backward, already split by op.
    }
    var r = rows[name] ?? Row()
    if e.phase == "backward" || e.phase == "kernel bwd" {
      r.backward += perStep
    } else {
      r.forward += perStep
    }
    r.flops += e.flops / Double(steps)
    r.bytes += e.bytes / Double(steps)
    rows[name] = r
  }
  for (name, r) in rows {
    rows[name]!.floor = max(
      r.flops / (rates.sgemmGigaflops * 1e9), r.bytes / (rates.copyGigabytes * 1e9))
  }
  let ordered = rows.sorted {
    $0.value.forward + $0.value.backward > $1.value.forward + $1.value.backward
  }
  let accounted = ordered.reduce(0) { $0 + $1.value.forward + $1.value.backward }
  let floor = ordered.reduce(0) { $0 + $1.value.floor }
  let loadText = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)
  let load = loadText?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
  print(
    String(
      format: "budget: %@, mean step %.1f ms (median %.1f); sgemm %.0f GFLOP/s and copy %.1f GB/s "
        + "measured in this process; kernels for %@; load average %@",
      title, mean * 1e3, median * 1e3, rates.sgemmGigaflops, rates.copyGigabytes,
      InstructionSet.compiled.displayName, load))
  print("")
  print(
    "| op (per step) | forward ms | backward ms | GFLOP | MB moved | floor ms | measured / floor |")
  print("|---|---|---|---|---|---|---|")
  func ratio(_ measured: Double, _ floor: Double) -> String {
    floor > 0 ? String(format: "%.1f", measured / floor) : "-"
  }
  for (name, r) in ordered {
    print(
      String(
        format: "| %@ | %.2f | %.2f | %.2f | %.0f | %.2f | %@ |", name, r.forward * 1e3,
        r.backward * 1e3, r.flops * 1e-9, r.bytes * 1e-6, r.floor * 1e3,
        ratio(r.forward + r.backward, r.floor)))
  }
  print(
    String(
      format: "| convolution glue (convolution ops less their kernels) | %.2f | | | | | |",
      (convolutionTape - convolutionKernels) * 1e3))
  let rest = mean - accounted - max(0, convolutionTape - convolutionKernels)
  print(
    String(format: "| not in any op (loss, module glue, untracked) | %.2f | | | | | |", rest * 1e3))
  let flops = ordered.reduce(0) { $0 + $1.value.flops }
  let bytes = ordered.reduce(0) { $0 + $1.value.bytes }
  print(
    String(
      format: "| **whole step, mean %.1f ms** | | | %.2f | %.0f | %.1f | %@ |", mean * 1e3,
      flops * 1e-9, bytes * 1e-6, floor * 1e3, ratio(mean, floor)))
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
