import ACONKernels
import ACONTensor
import ArgumentParser
import Dispatch
import Foundation

/// Times single operations (matrix product, memory copy, convolutions) and prints their
/// throughput beside the machine's ceilings and PyTorch's figures for the same convolutions.
///
/// The fixed figures were measured on the 2-core AMD EPYC Zen 3 machines (AVX2) of the first
/// performance work, 2026-12-01: OpenBLAS `cblas_sgemm` (n = 256..2048, 2 threads) at
/// 150-170 GFLOP/s, a two-thread copy of a 51 MB buffer at 28-31 GB/s counting read + write,
/// and PyTorch 2.15's convolutions (2 threads) from `scripts/bench/conv_pytorch.py`. On other
/// CPUs, compare with the rates this command measures in the same run instead.
///
/// The machines are shared and noisy, so besides the fixed ceilings each figure is also given
/// as a fraction of the sgemm and copy rates measured in the same run.
struct BenchOp: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-op",
    abstract: "Measure GFLOP/s of sgemm and of convolution forward and backward.",
    discussion: """
      Each figure is the median of --runs timed runs after --warmup untimed ones (--best: the \
      fastest run). FLOPs count two per multiply-add; a backward pass computes both the input \
      and the weight gradient (twice the forward's FLOPs). Convolutions run on a \
      [batch, 64, 56, 56] input. Fixed ceilings, measured on two AMD EPYC Zen 3 cores: sgemm \
      150-170 GFLOP/s, two-thread copy 28-31 GB/s counting read + write; PyTorch's figures come \
      from scripts/bench/conv_pytorch.py on the same machines.
      """)

  @Option(help: "Timed runs per measurement.") var runs = 5
  @Option(help: "Untimed runs before timing.") var warmup = 1
  @Option(help: "Batch size of the convolution input.") var batch = 32
  @Option(help: "Threads of the Swift kernels (default: one per core).") var workers: Int?
  @Flag(help: "Report the fastest run instead of the median (for a busy machine).") var best = false
  @Flag(help: "Also time the input gradient alone and the weight gradient alone.") var split = false
  @Flag(help: "Also print one JSON object with every figure as the last line.") var json = false
  @Option(
    name: .customLong("conv"),
    help:
      "Time this convolution instead of the default three: IN,OUT,SIZE,KERNEL[,STRIDE[,GROUPS]] (square input SIZE x SIZE, padding KERNEL / 2). Repeatable."
  )
  var convolutions: [String] = []
  @Option(
    help:
      "Tuning: the columns a convolution's matrix product aims for, small images unfolded side by side (default 2048 for 1x1 layers, 784 for larger kernels; this sets both)."
  )
  var targetColumns: Int?
  @Option(
    help:
      "Tuning: floats of one Winograd block's transformed input and output (default \(WinogradKernel.blockFloats))."
  )
  var winogradBlockFloats: Int?
  @Option(
    help:
      "Tuning: Winograd layers whose transformed input and output fit this many floats run whole, shared by positions (default \(KernelOptions().winogradWholeLayerFloats))."
  )
  var winogradWholeLayerFloats: Int?
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
      "Time every distinct convolution of ResNet-50 at 224x224 (with --batch), weighted by how often the network runs it."
  )
  var resnet50 = false

  /// Ceilings measured on two AMD EPYC Zen 3 cores (see the type's documentation).
  static let sgemmCeiling = 160.0
  static let copyCeiling = 30.0

  /// One measured figure.
  struct Row {
    var name: String
    var milliseconds: Double
    var gflops: Double?
    var gigabytes: Double?
    /// PyTorch's figure for the same operation (GFLOP/s, `scripts/bench/conv_pytorch.py` on
    /// two Zen 3 cores), where one was measured.
    var pytorch: Double?
  }

  init() {}

  func run() throws {
    guard runs >= 1, warmup >= 0, batch >= 1 else {
      throw ValidationError("--runs and --batch must be at least 1, --warmup at least 0")
    }
    try KernelOptions.with(kernelOptions(), measureAndReport)
  }

  /// The kernel options the flags ask for.
  func kernelOptions() throws -> KernelOptions {
    var options = KernelOptions()
    if let workers {
      guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
      options.workers = workers
    }
    if let targetColumns {
      guard targetColumns >= 1 else { throw ValidationError("--target-columns must be at least 1") }
      options.pointwiseTargetColumns = targetColumns
      options.unfoldedTargetColumns = targetColumns
    }
    if noWinograd { options.usesWinograd = false }
    if let winogradTile { options.winogradTile = winogradTile.rawValue }
    if let winogradBlockFloats {
      guard winogradBlockFloats >= 1 else {
        throw ValidationError("--winograd-block-floats must be at least 1")
      }
      options.winogradBlockFloats = winogradBlockFloats
    }
    if let winogradWholeLayerFloats {
      guard winogradWholeLayerFloats >= 0 else {
        throw ValidationError("--winograd-whole-layer-floats must be at least 0")
      }
      options.winogradWholeLayerFloats = winogradWholeLayerFloats
    }
    return options
  }

  private func measureAndReport() throws {
    print(
      "bench-op: workers \(Parallel.workers) (Swift kernels and matrix products), "
        + "\(best ? "fastest" : "median") of \(runs) runs after \(warmup) warm-up")
    let result = try measure { row, sgemm, copy in printRow(row, sgemm: sgemm, copy: copy) }
    if json {
      let data = try JSONSerialization.data(
        withJSONObject: jsonObject(result), options: [.sortedKeys])
      print(String(decoding: data, as: UTF8.self))
    }
  }

  /// Every measurement, with the fastest sgemm and the copy rate of this run; `report` sees
  /// each row as soon as it is measured.
  func measure(report: (Row, Double, Double) -> Void = { _, _, _ in }) throws -> (
    rows: [Row], sgemm: Double, copy: Double
  ) {
    var rows: [Row] = []
    for n in [512, 1024, 2048] { rows.append(try benchSgemm(n)) }
    rows.append(try benchCopy())
    let measuredSgemm = rows.compactMap(\.gflops).max() ?? Self.sgemmCeiling
    let measuredCopy = rows.last?.gigabytes ?? Self.copyCeiling
    for row in rows { report(row, measuredSgemm, measuredCopy) }
    if !convolutions.isEmpty || resnet50 {
      let specs =
        try convolutions.map(ConvSpec.init(parsing:)) + (resnet50 ? ConvSpec.resnet50 : [])
      var total = (seconds: 0.0, flops: 0.0)
      for spec in specs {
        let results = try benchConvolution(
          name: spec.name,
          weight: [spec.outputs, spec.inputs / spec.groups, spec.kernel, spec.kernel],
          padding: spec.kernel / 2, groups: spec.groups, size: spec.size, stride: spec.stride)
        for row in results {
          rows.append(row)
          report(row, measuredSgemm, measuredCopy)
        }
        // forward + backward, times the layers of this shape in the network.
        let both = results[2]
        total.seconds += both.milliseconds * 1e-3 * Double(spec.count)
        total.flops += (both.gflops ?? 0) * both.milliseconds * 1e-3 * 1e9 * Double(spec.count)
      }
      if resnet50 {
        let row = Row(
          name: "ResNet-50 convolutions, forward+backward, batch \(batch)",
          milliseconds: total.seconds * 1e3, gflops: total.flops / total.seconds * 1e-9)
        rows.append(row)
        report(row, measuredSgemm, measuredCopy)
      }
      return (rows, measuredSgemm, measuredCopy)
    }
    let cases:
      [(
        name: String, weight: [Int], padding: Int, groups: Int, forwardPT: Double?, bothPT: Double?
      )] = [
        ("conv3x3 64->64 pad 1", [64, 64, 3, 3], 1, 1, 85, nil),
        ("conv1x1 64->64", [64, 64, 1, 1], 0, 1, 18, nil),
        ("depthwise3x3 64 pad 1", [64, 1, 3, 3], 1, 64, 18, 5),
      ]
    for c in cases {
      var results = try benchConvolution(
        name: c.name, weight: c.weight, padding: c.padding, groups: c.groups)
      results[0].pytorch = c.forwardPT
      results[2].pytorch = c.bothPT
      for row in results {
        rows.append(row)
        report(row, measuredSgemm, measuredCopy)
      }
    }
    return (rows, measuredSgemm, measuredCopy)
  }

  /// One convolution geometry for `--conv` and `--resnet50`.
  struct ConvSpec {
    var inputs: Int, outputs: Int, size: Int, kernel: Int, stride = 1, groups = 1
    /// How many layers of the network have this geometry (1 for `--conv`).
    var count = 1

    var name: String {
      "conv\(kernel)x\(kernel)\(stride > 1 ? "/\(stride)" : "") \(inputs)->\(outputs) at \(size)"
        + (groups > 1 ? " groups \(groups)" : "") + (count > 1 ? " (x\(count))" : "")
    }

    init(_ inputs: Int, _ outputs: Int, _ size: Int, _ kernel: Int, stride: Int = 1, count: Int = 1)
    {
      (self.inputs, self.outputs, self.size, self.kernel, self.stride, self.count) = (
        inputs, outputs, size, kernel, stride, count
      )
    }

    init(parsing text: String) throws {
      let v = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
      guard v.count >= 4, v.count <= 6, v.allSatisfy({ ($0 ?? 0) > 0 }) else {
        throw ValidationError(
          "--conv wants IN,OUT,SIZE,KERNEL[,STRIDE[,GROUPS]] with positive integers, got '\(text)'")
      }
      self.init(v[0]!, v[1]!, v[2]!, v[3]!, stride: v.count > 4 ? v[4]! : 1)
      groups = v.count > 5 ? v[5]! : 1
      guard inputs % groups == 0, outputs % groups == 0 else {
        throw ValidationError("--conv: IN and OUT must be multiples of GROUPS in '\(text)'")
      }
    }

    /// ResNet-50 as the reference builds it (the stride on each stage's first 1x1 convolution)
    /// at 224: each distinct convolution and how many layers have it.
    static let resnet50: [ConvSpec] = [
      ConvSpec(3, 64, 224, 7, stride: 2),
      ConvSpec(64, 64, 56, 1), ConvSpec(256, 64, 56, 1, count: 2),
      ConvSpec(64, 64, 56, 3, count: 3),
      ConvSpec(64, 256, 56, 1, count: 4),
      ConvSpec(256, 128, 56, 1, stride: 2), ConvSpec(256, 512, 56, 1, stride: 2),
      ConvSpec(512, 128, 28, 1, count: 3), ConvSpec(128, 128, 28, 3, count: 4),
      ConvSpec(128, 512, 28, 1, count: 4),
      ConvSpec(512, 256, 28, 1, stride: 2), ConvSpec(512, 1024, 28, 1, stride: 2),
      ConvSpec(1024, 256, 14, 1, count: 5), ConvSpec(256, 256, 14, 3, count: 6),
      ConvSpec(256, 1024, 14, 1, count: 6),
      ConvSpec(1024, 512, 14, 1, stride: 2), ConvSpec(1024, 2048, 14, 1, stride: 2),
      ConvSpec(2048, 512, 7, 1, count: 2), ConvSpec(512, 512, 7, 3, count: 3),
      ConvSpec(512, 2048, 7, 1, count: 3),
    ]
  }

  /// The figures as one JSON object, keyed by ``key(_:)``.
  func jsonObject(_ result: (rows: [Row], sgemm: Double, copy: Double)) -> [String: Any] {
    var object: [String: Any] = [
      "runs": runs, "batch": batch, "statistic": best ? "fastest" : "median",
      "sgemm_ceiling_gflops": Self.sgemmCeiling, "copy_ceiling_gbs": Self.copyCeiling,
      "measured_sgemm_gflops": result.sgemm, "measured_copy_gbs": result.copy,
    ]
    for row in result.rows {
      var entry: [String: Any] = ["ms": row.milliseconds]
      if let f = row.gflops { entry["gflops"] = f }
      if let gb = row.gigabytes { entry["gbs"] = gb }
      if let pt = row.pytorch { entry["pytorch_gflops"] = pt }
      object[Self.key(row.name)] = entry
    }
    return object
  }

  /// A JSON key for a row: `conv3x3 64->64 pad 1 forward` becomes `conv3x3_64_64_pad_1_forward`.
  static func key(_ name: String) -> String {
    name.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }).joined(separator: "_")
  }

  func printRow(_ r: Row, sgemm: Double, copy: Double) {
    var line =
      r.name.padding(toLength: 40, withPad: " ", startingAt: 0)
      + String(format: " %8.2f ms", r.milliseconds)
    if let f = r.gflops {
      line += String(
        format: " %6.1f GFLOP/s (%3.0f%% of ceiling, %3.0f%% of this run's sgemm)", f,
        100 * f / Self.sgemmCeiling, 100 * f / sgemm)
    }
    if let gb = r.gigabytes {
      line += String(
        format: " %5.1f GB/s (%3.0f%% of ceiling, %3.0f%% of this run's copy)", gb,
        100 * gb / Self.copyCeiling, 100 * gb / copy)
    }
    if let pt = r.pytorch, let f = r.gflops {
      line += String(format: "  PyTorch %.0f GFLOP/s: %.1fx", pt, f / pt)
    }
    print(line)
  }

  /// Seconds of `body` (median or fastest of the timed runs); `prepare` runs untimed first.
  func time(prepare: () throws -> Void = {}, measure body: () throws -> Void) throws -> Double {
    for _ in 0..<warmup {
      try prepare()
      try body()
    }
    var times: [Double] = []
    for _ in 0..<runs {
      try prepare()
      let start = DispatchTime.now().uptimeNanoseconds
      try body()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
    }
    times.sort()
    if best { return times[0] }
    let m = times.count / 2
    return times.count % 2 == 1 ? times[m] : (times[m - 1] + times[m]) / 2
  }

  func benchSgemm(_ n: Int) throws -> Row {
    var rng = RandomGenerator(seed: 1)
    let a = Tensor.randomNormal([n, n], using: &rng)
    let b = Tensor.randomNormal([n, n], using: &rng)
    let seconds = try time { _ = try Tensor.matmul(a, b) }
    let flops = 2.0 * Double(n) * Double(n) * Double(n)
    return Row(name: "sgemm \(n)", milliseconds: seconds * 1e3, gflops: flops / seconds * 1e-9)
  }

  /// Copies one convolution input (`[batch, 64, 56, 56]` floats) on the Swift workers.
  func benchCopy() throws -> Row {
    let count = batch * 64 * 56 * 56
    let a = Tensor(shape: [count], repeating: 1)
    let seconds = try time { _ = a.copy() }
    return Row(
      name: "copy \((count * 4) >> 20) MB, 2 threads", milliseconds: seconds * 1e3,
      gigabytes: Double(2 * 4 * count) / seconds * 1e-9)
  }

  /// Forward, backward (input and weight gradients) and both; with --split also each gradient
  /// alone.
  func benchConvolution(
    name: String, weight: [Int], padding: Int, groups: Int, size: Int = 56, stride: Int = 1
  ) throws -> [Row] {
    var rng = RandomGenerator(seed: 2)
    let x = Parameter(Tensor.randomNormal([batch, weight[1] * groups, size, size], using: &rng))
    let w = Parameter(Tensor.randomNormal(weight, std: 0.1, using: &rng))
    func conv(_ x: Tensor, _ w: Tensor) throws -> Tensor {
      try Tensor.conv2d(x, weight: w, bias: nil, stride: stride, padding: padding, groups: groups)
    }
    let y0 = try withoutGradients { try conv(x.value, w.value) }
    let dy = Tensor.randomNormal(y0.shape, using: &rng)
    let forward = try time { _ = try withoutGradients { try conv(x.value, w.value) } }
    /// Times `backward` of a fresh forward of `makeInputs()` (the forward itself untimed).
    func backward(_ makeInputs: @escaping () -> (Tensor, Tensor)) throws -> Double {
      var y = y0
      return try time(
        prepare: {
          x.zeroGrad()
          w.zeroGrad()
          let (xi, wi) = makeInputs()
          y = try conv(xi, wi)
        },
        measure: { try y.backward(seed: dy) })
    }
    let both = try backward { (x.value, w.value) }
    let macs = Double(y0.count) * Double(weight[1] * weight[2] * weight[3])
    // The least a pass must move: forward reads x and w and writes y; backward reads x, w and dy
    // and writes dx and dw.
    let (xBytes, yBytes, wBytes) = (
      Double(x.value.count * 4), Double(y0.count * 4), Double(w.value.count * 4)
    )
    let fBytes = xBytes + yBytes + wBytes
    let bBytes = 2 * xBytes + yBytes + 2 * wBytes
    let depthwise = groups > 1
    func row(_ suffix: String, _ seconds: Double, flops: Double, bytes: Double) -> Row {
      Row(
        name: "\(name) \(suffix)", milliseconds: seconds * 1e3, gflops: flops / seconds * 1e-9,
        gigabytes: depthwise ? bytes / seconds * 1e-9 : nil)
    }
    var rows = [
      row("forward", forward, flops: 2 * macs, bytes: fBytes),
      row("backward", both, flops: 4 * macs, bytes: bBytes),
      row("forward+backward", forward + both, flops: 6 * macs, bytes: fBytes + bBytes),
    ]
    if split {
      let dxOnly = try backward { (x.value, w.value.detached) }
      let dwOnly = try backward { (x.value.detached, w.value) }
      rows.append(row("input gradient", dxOnly, flops: 2 * macs, bytes: yBytes + xBytes + wBytes))
      rows.append(row("weight gradient", dwOnly, flops: 2 * macs, bytes: yBytes + xBytes + wBytes))
    }
    return rows
  }
}
