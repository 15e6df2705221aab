import ACONKernels
import ACONNN
import ACONTensor
import ArgumentParser
import Foundation

/// Times one activation layer's forward and backward pass and measures what it keeps for
/// backward.
struct BenchActivation: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-activation",
    abstract: "Time one activation's forward and backward pass and the bytes it keeps.",
    discussion: "Activations: \(ActivationKind.names.joined(separator: ", ")).")

  @Option(help: "Activation.") var activation = ActivationKind.aconC
  @Option(help: "Input shape N,C,H,W or N,C.") var shape = "64,64,56,56"
  @Option(help: "Timed repetitions; the median is reported.") var repeats = 5
  @Option(help: "Random seed.") var seed: UInt64 = 0
  @Flag(help: "End with one JSON object (forward_seconds, backward_seconds, saved_bytes).")
  var json = false
  @Flag(help: "Time a batch norm followed by the activation (the pair every block of the zoo has).")
  var afterBatchNorm = false
  @Flag(help: "Run the batch norm and the activation as separate layers (with --after-batch-norm).")
  var noFusion = false

  func run() throws {
    if noFusion { try withoutLayerFusion(measure) } else { try measure() }
  }

  func measure() throws {
    let kind = activation
    let dims = shape.split(separator: ",").compactMap {
      Int($0.trimmingCharacters(in: .whitespaces))
    }
    guard dims.count == 4 || dims.count == 2, dims.allSatisfy({ $0 > 0 }) else {
      throw ValidationError("--shape must be N,C,H,W or N,C with positive sizes, got '\(shape)'")
    }
    guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
    var rng = RandomGenerator(seed: seed)
    let activationLayer = kind.make(channels: dims[1], using: &rng)
    let layer =
      afterBatchNorm ? Sequential([BatchNorm2d(dims[1]), activationLayer]) : activationLayer
    // The input is a leaf that wants its gradient, as inside a network (and ReLU has no
    // parameters of its own).
    let input = Parameter(Tensor.randomNormal(dims, using: &rng))
    let x = input.value
    let upstream = Tensor.randomNormal(dims, using: &rng)

    _ = try layer(x)  // warm the buffer pool and the code
    layer.zeroGrad()
    let saved = try measureSaved(layer, x, base: BufferPool.shared.liveBytes)

    var forwardTimes: [Double] = []
    var backwardTimes: [Double] = []
    for _ in 0..<repeats {
      let t0 = DispatchTime.now().uptimeNanoseconds
      let y = try layer(x)
      let t1 = DispatchTime.now().uptimeNanoseconds
      try y.backward(seed: upstream)
      let t2 = DispatchTime.now().uptimeNanoseconds
      forwardTimes.append(Double(t1 - t0) * 1e-9)
      backwardTimes.append(Double(t2 - t1) * 1e-9)
      layer.zeroGrad()
      input.zeroGrad()
    }
    let forward = median(forwardTimes)
    let backward = median(backwardTimes)
    let bytes = Double(x.count * 4)
    let forwardRate = 2 * bytes / forward / 1e9
    let backwardRate = 3 * bytes / backward / 1e9
    let (copyRate, bestCopyRate) = measureCopy(x)

    let what =
      afterBatchNorm
      ? "batch norm + \(kind.rawValue) (\(noFusion ? "separate" : "fused"))" : kind.rawValue
    print("\(what) on \(describe(dims)), median of \(repeats), \(Parallel.workers) threads")
    if afterBatchNorm {
      print(
        "(GB/s below count the activation's bytes alone, 8 and 12 per element: a speed scale, not traffic)"
      )
    }
    print(
      String(
        format: "forward  %8.3f ms  %6.1f GB/s (read x, write y: 8 bytes/element)",
        forward * 1e3, forwardRate))
    print(
      String(
        format: "backward %8.3f ms  %6.1f GB/s (read x, dy, write dx: 12 bytes/element)",
        backward * 1e3, backwardRate))
    print(
      String(
        format: "copy     %8.3f ms  %6.1f GB/s measured now (read + write; notes: 28-31 GB/s "
          + "on 2 threads); best %.3f ms %.1f GB/s", 2 * bytes / copyRate / 1e9 * 1e3, copyRate,
        2 * bytes / bestCopyRate / 1e9 * 1e3, bestCopyRate))
    print(
      String(
        format: "best of %d: forward %.3f ms (%.1f GB/s), backward %.3f ms (%.1f GB/s)", repeats,
        forwardTimes.min()! * 1e3, 2 * bytes / forwardTimes.min()! / 1e9,
        backwardTimes.min()! * 1e3, 3 * bytes / backwardTimes.min()! / 1e9))
    print(
      String(
        format: "kept for backward: %d bytes (%.2fx the input)", saved, Double(saved) / bytes))
    if json {
      print(
        "{\"activation\": \"\(kind.rawValue)\", \"after_batch_norm\": \(afterBatchNorm), "
          + "\"fused\": \(afterBatchNorm && !noFusion), \"shape\": \(dims), "
          + "\"forward_seconds\": \(forward), \"backward_seconds\": \(backward), "
          + "\"saved_bytes\": \(saved), \"forward_gbps\": \(forwardRate), "
          + "\"backward_gbps\": \(backwardRate), \"copy_gbps\": \(copyRate), "
          + "\"best_copy_gbps\": \(bestCopyRate)}")
    }
  }

  /// Bytes that stay alive through the tape after forward, the input included when the tape
  /// keeps it (the input is a fresh copy that only the tape can hold on to).
  private func measureSaved(_ layer: Module, _ x: Tensor, base: Int) throws -> Int {
    var y: Tensor? = nil
    do {
      let input = Parameter(x)  // a fresh copy that only the tape can keep alive
      y = try layer(input.value)
    }
    let kept = BufferPool.shared.liveBytes - base - y!.count * 4
    y = nil
    layer.zeroGrad()
    return kept
  }

  /// Copy bandwidth (read + write) on the kernels' threads, the ceiling elementwise kernels meet:
  /// the median and the fastest of the runs, to set beside the kernels' own median and best.
  private func measureCopy(_ x: Tensor) -> (median: Double, best: Double) {
    let n = x.count
    var times: [Double] = []
    for _ in 0..<max(3, repeats) {
      let t0 = DispatchTime.now().uptimeNanoseconds
      _ = x.copy()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
    }
    return (8 * Double(n) / median(times) / 1e9, 8 * Double(n) / times.min()! / 1e9)
  }

  private func median(_ v: [Double]) -> Double {
    let s = v.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
  }
}
