import ACONDistributed
import ACONModels
import ACONTraining
import ArgumentParser
import Foundation

/// `mpirun -np K acon bench-allreduce --model M`: the time to average one step's gradients of a
/// model over the ranks, alone (the ranks line up first, so waiting for a slower rank is not
/// counted).
struct BenchAllreduce: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-allreduce",
    abstract: "Under mpirun: time the gradient allreduce of a model's parameters (bytes, ms, GB/s)."
  )

  @OptionGroup var network: NetworkOptions
  @Option(help: "Timed reductions.") var runs = 20
  @Option(help: "Bucket size in MB (the whole gradient in buckets of this size, reduced in turn).")
  var bucketMb: Double = 4
  @Flag(help: "Print one JSON object as the last line.") var json = false

  func run() throws {
    guard MPIProcessGroup.isLaunchedByMPI else {
      throw CLIError(
        "bench-allreduce measures MPI: run it as `mpirun -np K acon bench-allreduce ...`")
    }
    guard runs >= 1, bucketMb > 0 else { throw CLIError("--runs and --bucket-mb must be positive") }
    let group = try MPIProcessGroup(timeout: 120)
    defer { group.finalize() }
    let parameters = try ModelZoo.make(network.configuration).parameterCount
    let bucket = max(1, Int(bucketMb * 1_048_576) / 4)
    let values = (0..<parameters).map { Float($0 % 97) * 1e-3 }
    var times: [Double] = []
    for run in 0...runs {
      _ = try group.allreduceSum([0])  // line the ranks up
      let start = DispatchTime.now().uptimeNanoseconds
      var pending: [any PendingReduction] = []
      var offset = 0
      while offset < parameters {
        let end = min(parameters, offset + bucket)
        pending.append(try group.startAllreduceSum(Array(values[offset..<end])))
        offset = end
      }
      for p in pending { _ = try p.wait() }
      if run > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
    }
    times.sort()
    let median = times[times.count / 2]
    let bytes = parameters * 4
    // A ring allreduce moves 2 (K - 1) / K of the data through every rank's link.
    let busBytes = Double(bytes) * 2 * Double(group.size - 1) / Double(group.size)
    guard group.rank == 0 else { return }
    print(
      String(
        format:
          "%@ %@: %d parameters, %.2f MB of gradients, %d ranks: allreduce median %.2f ms (min %.2f), %.2f GB/s bus bandwidth",
        network.model.name, network.activation.rawValue, parameters, Double(bytes) / 1e6,
        group.size, median * 1e3,
        times[0] * 1e3, busBytes / median / 1e9))
    if json {
      let object: [String: Any] = [
        "parameters": parameters, "bytes": bytes, "ranks": group.size,
        "allreduce_seconds_median": median, "allreduce_seconds_min": times[0],
      ]
      print(
        String(
          decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
          as: UTF8.self))
    }
  }
}
