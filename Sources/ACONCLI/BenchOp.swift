import ACONKernels
import ACONTensor
import ArgumentParser
import Dispatch
import Foundation

/// Times single operations (matrix product, convolutions) and prints their throughput beside the
/// machine's ceilings and PyTorch's figures from `notes/performance.md`.
struct BenchOp: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-op",
    abstract: "Measure GFLOP/s of sgemm and of convolution forward and backward.",
    discussion: """
      Each figure is the median of --runs timed runs after --warmup untimed ones. FLOPs count \
      two per multiply-add; a backward pass computes both the input and the weight gradient \
      (twice the forward's FLOPs). Ceilings: sgemm ~150-170 GFLOP/s on two Zen 3 cores, \
      two-thread copy ~28-31 GB/s.
      """)

  @Option(help: "Timed runs per measurement (the median is reported).") var runs = 5
  @Option(help: "Untimed runs before timing.") var warmup = 1
  @Option(help: "Batch size of the convolution input (N of N x 64 x 56 x 56).") var batch = 32
  @Flag(help: "Also print one JSON object with every figure as the last line.") var json = false

  /// The ceilings and PyTorch figures measured on the target machine (notes/performance.md).
  static let sgemmCeiling = 160.0
  static let copyCeiling = 30.0

  struct Row {
    var name: String
    var milliseconds: Double
    var gflops: Double
    var gigabytes: Double?
    var pytorch: Double?
  }

  func run() throws {
    guard runs >= 1, warmup >= 0, batch >= 1 else {
      throw ValidationError("--runs and --batch must be at least 1, --warmup at least 0")
    }
    var rows: [Row] = []
    print("bench-op: BLAS threads \(BLAS.threads), Swift workers \(Parallel.workers), "
      + "median of \(runs) runs after \(warmup) warm-up")
    for n in [512, 1024, 2048] {
      rows.append(try benchSgemm(n))
      printRow(rows.last!)
    }
    let cases: [(name: String, weight: [Int], padding: Int, groups: Int, forwardPT: Double?, bothPT: Double?)] = [
      ("conv3x3 64->64 pad 1", [64, 64, 3, 3], 1, 1, 85, nil),
      ("conv1x1 64->64", [64, 64, 1, 1], 0, 1, 18, nil),
      ("depthwise3x3 64 pad 1", [64, 1, 3, 3], 1, 64, 18, 5),
    ]
    for c in cases {
      let results = try benchConvolution(
        name: c.name, weight: c.weight, padding: c.padding, groups: c.groups)
      var (forward, backward, both) = results
      forward.pytorch = c.forwardPT
      both.pytorch = c.bothPT
      for row in [forward, backward, both] {
        rows.append(row)
        printRow(row)
      }
    }
    if json {
      var object: [String: Any] = [
        "runs": runs, "batch": batch, "sgemm_ceiling_gflops": Self.sgemmCeiling,
        "copy_ceiling_gbs": Self.copyCeiling,
      ]
      for row in rows {
        var entry: [String: Any] = ["ms": row.milliseconds, "gflops": row.gflops]
        if let gb = row.gigabytes { entry["gbs"] = gb }
        if let pt = row.pytorch { entry["pytorch_gflops"] = pt }
        object[Self.key(row.name)] = entry
      }
      let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
      print(String(decoding: data, as: UTF8.self))
    }
  }

  /// A JSON key for a row: `conv3x3 64->64 pad 1 forward` becomes `conv3x3_64_64_pad_1_forward`.
  static func key(_ name: String) -> String {
    let parts = name.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber })
    return parts.joined(separator: "_")
  }

  func printRow(_ r: Row) {
    var line =
      r.name.padding(toLength: 38, withPad: " ", startingAt: 0)
      + String(
        format: " %9.2f ms %7.1f GFLOP/s (%3.0f%% of sgemm ceiling)", r.milliseconds, r.gflops,
        100 * r.gflops / Self.sgemmCeiling)
    if let gb = r.gigabytes {
      line += String(format: "  %5.1f GB/s (%3.0f%% of copy ceiling)", gb, 100 * gb / Self.copyCeiling)
    }
    if let pt = r.pytorch {
      line += String(format: "  PyTorch %.0f GFLOP/s: %.1fx", pt, r.gflops / pt)
    }
    print(line)
  }

  /// Median seconds of `body` over the timed runs; `prepare` runs untimed before each.
  func median(prepare: () throws -> Void = {}, _ body: () throws -> Void) rethrows -> Double {
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
    return times.count % 2 == 1
      ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
  }

  func benchSgemm(_ n: Int) throws -> Row {
    var rng = RandomGenerator(seed: 1)
    let a = Tensor.randomNormal([n, n], using: &rng)
    let b = Tensor.randomNormal([n, n], using: &rng)
    let c = Tensor(uninitializedShape: [n, n])
    let seconds = try median {
      BLAS.sgemm(
        transposeA: false, transposeB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data,
        ldb: n, c: c.mutableData, ldc: n)
    }
    let flops = 2.0 * Double(n) * Double(n) * Double(n)
    return Row(name: "sgemm \(n)", milliseconds: seconds * 1e3, gflops: flops / seconds * 1e-9)
  }

  /// Forward, backward (input and weight gradients) and both, on `[batch, 64, 56, 56]`.
  func benchConvolution(name: String, weight: [Int], padding: Int, groups: Int) throws -> (
    Row, Row, Row
  ) {
    var rng = RandomGenerator(seed: 2)
    let xShape = [batch, weight[1] * groups, 56, 56]
    let x = Parameter(Tensor.randomNormal(xShape, using: &rng))
    let w = Parameter(Tensor.randomNormal(weight, std: 0.1, using: &rng))
    let y0 = try withoutGradients {
      try Tensor.conv2d(x.value, weight: w.value, bias: nil, padding: padding, groups: groups)
    }
    let dy = Tensor.randomNormal(y0.shape, using: &rng)
    let forward = try median {
      _ = try withoutGradients {
        try Tensor.conv2d(x.value, weight: w.value, bias: nil, padding: padding, groups: groups)
      }
    }
    var y = y0
    let backward = try median(prepare: {
      x.zeroGrad()
      w.zeroGrad()
      y = try Tensor.conv2d(x.value, weight: w.value, bias: nil, padding: padding, groups: groups)
    }) {
      try y.backward(seed: dy)
    }
    if ProcessInfo.processInfo.environment["ACON_BENCH_SPLIT"] != nil {
      let xOnly = try median(prepare: {
        x.zeroGrad()
        y = try Tensor.conv2d(x.value, weight: w.value.detached, bias: nil, padding: padding, groups: groups)
      }) { try y.backward(seed: dy) }
      let wOnly = try median(prepare: {
        w.zeroGrad()
        y = try Tensor.conv2d(x.value.detached, weight: w.value, bias: nil, padding: padding, groups: groups)
      }) { try y.backward(seed: dy) }
      print(String(format: "%@: dx only %.2f ms, dw only %.2f ms", name, xOnly * 1e3, wOnly * 1e3))
    }
    let macs = Double(y0.count) * Double(weight[1] * weight[2] * weight[3])
    let fFlops = 2 * macs
    // Bytes a pass must move at least: forward reads x and w and writes y; backward reads x, w
    // and dy and writes dx and dw.
    let xBytes = Double(x.value.count * 4)
    let yBytes = Double(y0.count * 4)
    let wBytes = Double(w.value.count * 4)
    let fBytes = xBytes + yBytes + wBytes
    let bBytes = 2 * xBytes + yBytes + 2 * wBytes
    let depthwise = groups > 1
    func gb(_ bytes: Double, _ s: Double) -> Double? { depthwise ? bytes / s * 1e-9 : nil }
    return (
      Row(
        name: "\(name) forward", milliseconds: forward * 1e3, gflops: fFlops / forward * 1e-9,
        gigabytes: gb(fBytes, forward)),
      Row(
        name: "\(name) backward", milliseconds: backward * 1e3,
        gflops: 2 * fFlops / backward * 1e-9, gigabytes: gb(bBytes, backward)),
      Row(
        name: "\(name) forward+backward", milliseconds: (forward + backward) * 1e3,
        gflops: 3 * fFlops / (forward + backward) * 1e-9,
        gigabytes: gb(fBytes + bBytes, forward + backward))
    )
  }
}
