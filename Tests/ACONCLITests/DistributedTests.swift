import ACONTensor
import ACONTraining
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `mpirun -np K acon train ...` on this host (Open MPI from Debian's openmpi-bin, installed by
/// scripts/setup.sh). Tiny runs: ShuffleNetV2-0.25x on 64-128 Fashion-MNIST images.
@Suite("data-parallel training under mpirun", .serialized)
struct DistributedTests {
  /// A started `mpirun` job.
  final class Job {
    let process = Process()
    let out = Pipe()
    let err = Pipe()
    var stdout = ""
    var stderr = ""

    init(_ arguments: [String]) throws {
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = ["mpirun", "--oversubscribe", "--bind-to", "none"] + arguments
      var environment = ProcessInfo.processInfo.environment
      // The CI runs as root; Open MPI refuses to without these.
      environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
      environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
      process.environment = environment
      process.standardOutput = out
      process.standardError = err
      try process.run()
    }

    /// Waits for the end; returns the exit status.
    @discardableResult
    func finish() -> Int32 {
      stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      process.waitUntilExit()
      return process.terminationStatus
    }
  }

  static func mpirun(_ arguments: [String]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    let job = try Job(arguments)
    let status = job.finish()
    return (status, job.stdout, job.stderr)
  }

  static func tiny(_ out: URL, lr: String = "0.0003") -> [String] {
    [
      "train", "--model", "shufflenetv2-0.25x", "--activation", "meta-acon", "--no-augment",
      "--test-limit", "16", "--lr", lr, "--out", out.path, "--quiet",
    ]
  }

  static func metrics(_ directory: URL) throws -> [[String: Any]] {
    try String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n").map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
  }

  static func weights(_ directory: URL) throws -> [String: [Float]] {
    let file = try SafeTensors.read(directory.appendingPathComponent("model.safetensors"))
    return file.tensors.mapValues(\.scalars)
  }

  /// Largest |a - b| / (|a| + 1e-3) over the losses of two runs, iteration by iteration.
  static func lossDifferences(_ a: [[String: Any]], _ b: [[String: Any]]) -> [Double] {
    zip(a, b).map { x, y in
      let (u, v) = (x["train_loss"] as? Double ?? .nan, y["train_loss"] as? Double ?? .nan)
      return abs(u - v) / abs(u)
    }
  }

  /// With --sync-batchnorm, 2 ranks at batch 32 follow 1 process at batch 64 (the same 64
  /// images, meta-ACON: its generators' batch norms are synchronised too).
  ///
  /// Tolerance: the two differ only in reduction order (per-rank sums, then across ranks), and
  /// this network amplifies rounding quickly: the same single-process run on 1 thread and on 2
  /// threads (other chunk sums) drifts apart by up to 6e-4 relative in the loss over 20
  /// iterations (1e-2 at --lr 0.001), and its final weights by 2e-4 to 0.28 relative L2
  /// depending on the seed. So the losses are compared over 20 iterations (the first 3 within
  /// 2e-5, all within 3e-3), and the weights after 5, before the drift grows: there 2 ranks
  /// with --sync-batchnorm were 1.4e-6 from 1 process and 2 ranks without it 2.6e-2 (relative
  /// L2 over every tensor, seed 0; after 20 iterations 3.6e-4 to 3.8e-3 against 6.5e-2, too
  /// close to tell apart reliably).
  @Test func syncBatchNormTwoRanksMatchOneProcessWithTheDoubleBatch() throws {
    let (one, two) = try Self.singleAndSyncRuns(epochs: 20)
    let (oneShort, twoShort) = try Self.singleAndSyncRuns(epochs: 5)
    defer {
      for d in [one, two, oneShort, twoShort] { try? FileManager.default.removeItem(at: d) }
    }
    let (a, b) = (try Self.metrics(one), try Self.metrics(two))
    #expect(a.count == 20 && b.count == 20)
    let differences = Self.lossDifferences(a, b)
    #expect(differences.prefix(3).allSatisfy { $0 <= 2e-5 }, "\(differences)")
    #expect(differences.allSatisfy { $0 <= 3e-3 }, "\(differences)")
    // The losses moved far more than they differ: the test has teeth.
    let first = a[0]["train_loss"] as? Double ?? 0
    let last = a[19]["train_loss"] as? Double ?? 0
    #expect(first - last > 0.1)
    // The weights after 5 iterations.
    let (wa, wb) = (try Self.weights(oneShort), try Self.weights(twoShort))
    #expect(Set(wa.keys) == Set(wb.keys))
    var squaredDifference = 0.0
    var squaredNorm = 0.0
    for (name, x) in wa where !name.hasSuffix("num_batches_tracked") {
      let y = try #require(wb[name])
      for (u, v) in zip(x, y) {
        squaredDifference += Double(u - v) * Double(u - v)
        squaredNorm += Double(u) * Double(u)
      }
    }
    #expect((squaredDifference / squaredNorm).squareRoot() < 1e-4)
  }

  /// The tiny model trained for `epochs` iterations on 64 images by 1 process at batch 64 and by
  /// 2 ranks at batch 32 with --sync-batchnorm; their output directories.
  static func singleAndSyncRuns(epochs: Int) throws -> (single: URL, ranks: URL) {
    let (one, two) = (temporaryDirectory(), temporaryDirectory())
    let common = ["--train-limit", "64", "--epochs", "\(epochs)"]
    let single = try runACON(tiny(one) + common + ["--batch-size", "64"])
    #expect(single.status == 0, "\(single.stderr)")
    let parallel = try mpirun(
      ["-np", "2", try aconBinary().path] + tiny(two) + common + [
        "--batch-size", "32", "--sync-batchnorm",
      ])
    #expect(parallel.status == 0, "\(parallel.stderr)")
    return (one, two)
  }

  /// Without --sync-batchnorm the ranks' weights stay bitwise identical after every step
  /// (--verify-replicas compares a hash of them after each one and fails the run otherwise; its
  /// failing side is tested in ACONTrainingTests).
  @Test func replicasStayBitwiseIdenticalAfterEveryStep() throws {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let r = try Self.mpirun(
      ["-np", "2", try aconBinary().path] + Self.tiny(out, lr: "0.05")
        + [
          "--train-limit", "128", "--batch-size", "16", "--epochs", "2", "--verify-replicas",
          "--bucket-mb", "0.25",
        ])
    #expect(r.status == 0, "\(r.stderr)")
    let m = try Self.metrics(out)
    #expect(m.count == 2)
    #expect(m.last?["iteration"] as? Int == 8)
  }

  /// A run started on 1 process continues on 2 ranks with its global batch (64 = 2 x 32) and,
  /// with synchronised batch norm, follows the uninterrupted single-process run.
  @Test func resumeOnTwoRanksFromAOneProcessCheckpoint() throws {
    let (resumed, straight) = (temporaryDirectory(), temporaryDirectory())
    defer { for d in [resumed, straight] { try? FileManager.default.removeItem(at: d) } }
    let common = ["--train-limit", "128", "--batch-size", "64", "--schedule", "constant"]
    let first = try runACON(Self.tiny(resumed) + common + ["--epochs", "2"])
    #expect(first.status == 0, "\(first.stderr)")
    let second = try Self.mpirun(
      ["-np", "2", try aconBinary().path] + Self.tiny(resumed) + common
        + ["--epochs", "4", "--resume", "--sync-batchnorm"])
    #expect(second.status == 0, "\(second.stderr)")
    let whole = try runACON(Self.tiny(straight) + common + ["--epochs", "4"])
    #expect(whole.status == 0, "\(whole.stderr)")
    let (a, b) = (try Self.metrics(resumed), try Self.metrics(straight))
    #expect(a.map { $0["iteration"] as? Int } == [2, 4, 6, 8])
    #expect(b.map { $0["iteration"] as? Int } == [2, 4, 6, 8])
    let differences = Self.lossDifferences(a, b)
    #expect(differences[0] == 0 && differences[1] == 0, "\(differences)")
    #expect(differences.allSatisfy { $0 <= 1e-3 }, "\(differences)")
    // The checkpoint now records 2 ranks of 32.
    let state =
      try SafeTensors.read(resumed.appendingPathComponent("checkpoint.safetensors"))
      .metadata["acon.training_state"] ?? ""
    #expect(state.contains("\"worldSize\":2"), "\(state.prefix(300))")
    #expect(state.contains("\"batchSize\":32"))
    // A global batch that 3 ranks cannot share is refused with a clear message.
    let three = try Self.mpirun(
      ["-np", "3", try aconBinary().path] + Self.tiny(resumed) + common + [
        "--epochs", "5", "--resume",
      ])
    #expect(three.status != 0)
    #expect(three.stderr.contains("cannot share evenly"), "\(three.stderr)")
  }

  /// A run stopped in the middle of an epoch on 1 process (SIGTERM, which saves) continues on 2
  /// ranks from the very batch where it stopped: the global order of the epoch does not depend
  /// on the number of ranks, and with synchronised batch norm the remaining losses follow the
  /// uninterrupted single-process run's.
  ///
  /// Tolerance: the first resumed step sees the same weights and the very batch the straight
  /// run saw there, so its loss agrees to 2e-5 (a neighbouring batch's differs by far more,
  /// checked); after it the two runs differ in reduction order only, which this network
  /// amplifies step by step (the sync batch norm test above: up to 1e-2 over 20 steps at a
  /// higher learning rate), here up to 1.2e-2 over 28 steps seen, so 3e-2 for every later step.
  @Test func resumeInTheMiddleOfAnEpochOnTwoRanks() throws {
    let (resumed, straight) = (temporaryDirectory(), temporaryDirectory())
    defer { for d in [resumed, straight] { try? FileManager.default.removeItem(at: d) } }
    // 1024 images in global batches of 64: 16 iterations an epoch, 32 in all.
    let common = [
      "--train-limit", "1024", "--batch-size", "64", "--schedule", "constant", "--epochs", "2",
    ]
    let (straightLog, firstLog, secondLog) = (
      straight.appendingPathComponent("losses.txt"), resumed.appendingPathComponent("first.txt"),
      resumed.appendingPathComponent("second.txt")
    )
    let whole = try runACON(Self.tiny(straight) + common + ["--loss-log", straightLog.path])
    #expect(whole.status == 0, "\(whole.stderr)")
    let reference = try FaultTests.lossLines(straightLog)
    #expect(reference.count == 32)

    let process = Process()
    process.executableURL = try aconBinary()
    process.arguments = Self.tiny(resumed) + common + ["--loss-log", firstLog.path]
    process.standardError = FileHandle.nullDevice
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(120)
    while try process.isRunning && FaultTests.lossLines(firstLog).count < 3 && Date() < deadline {
      usleep(1000)
    }
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
    let (state, _) = try Checkpoint.readState(
      resumed.appendingPathComponent("checkpoint.safetensors"))
    // SIGTERM is answered at the next step's end, long before the epoch's 16th.
    #expect(
      state.batchInEpoch > 0 && state.batchInEpoch < 16, "stopped at batch \(state.batchInEpoch)")
    #expect(state.iteration == (try FaultTests.lossLines(firstLog)).count)

    let second = try Self.mpirun(
      ["-np", "2", try aconBinary().path] + Self.tiny(resumed) + common
        + ["--resume", "--sync-batchnorm", "--loss-log", secondLog.path])
    #expect(second.status == 0, "\(second.stderr)")
    let continued = try FaultTests.lossLines(secondLog)
    #expect(
      continued.keys.sorted() == Array((state.iteration + 1)...32), "\(continued.keys.sorted())")
    func loss(_ log: [Int: String], _ iteration: Int) throws -> Double {
      try #require(Double(log[iteration] ?? ""), "no loss logged for iteration \(iteration)")
    }
    for iteration in continued.keys {
      let (u, v) = (try loss(continued, iteration), try loss(reference, iteration))
      #expect(abs(u - v) / abs(v) <= 3e-2, "iteration \(iteration): \(u) on 2 ranks, \(v) on 1")
    }
    let next = state.iteration + 1
    let (resumedFirst, straightFirst) = (try loss(continued, next), try loss(reference, next))
    #expect(
      abs(resumedFirst - straightFirst) / straightFirst <= 2e-5,
      "iteration \(next): \(resumedFirst), \(straightFirst)")
    // The check has teeth: the batches next to it give other losses.
    for neighbour in [next - 1, next + 1] {
      let other = try loss(reference, neighbour)
      #expect(abs(resumedFirst - other) / other > 1e-3, "iteration \(neighbour)'s loss is \(other)")
    }
  }

  /// A killed rank ends the job at once, naming the rank, with the last checkpoint whole; a rank that stops answering ends it after --collective-timeout.
  @Test func aKilledOrHungRankEndsTheJob() throws {
    for signal in [SIGKILL, SIGSTOP] {
      let out = temporaryDirectory()
      defer { try? FileManager.default.removeItem(at: out) }
      let job = try Job(
        ["-np", "2", try aconBinary().path] + Self.tiny(out, lr: "0.01")
          + [
            "--train-limit", "64", "--batch-size", "16", "--epochs", "200", "--checkpoint-every",
            "1",
            "--collective-timeout", "5",
          ])
      let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
      let deadline = Date().addingTimeInterval(120)
      while !FileManager.default.fileExists(atPath: checkpoint.path) && Date() < deadline {
        usleep(100_000)
      }
      let rank1 = try #require(Self.rankProcess(1, parent: job.process.processIdentifier))
      let killed = Date()
      kill(rank1, signal)
      let status = job.finish()
      let seconds = Date().timeIntervalSince(killed)
      #expect(status != 0)
      #expect(seconds < 60, "the job took \(seconds) s to end")
      if signal == SIGKILL {
        #expect(job.stderr.contains("rank 1"), "\(job.stderr)")
      } else {
        #expect(
          job.stderr.contains("got no answer from the other ranks within 5 s"), "\(job.stderr)")
      }
      // The last checkpoint is whole: it reads back with its training state.
      let file = try SafeTensors.read(checkpoint)
      let state = try #require(file.metadata["acon.training_state"])
      #expect(state.contains("\"worldSize\":2"))
      #expect(file.tensors.keys.contains { $0.hasPrefix("optimizer.") })
    }
  }

  /// Ctrl-C or `kill` on mpirun sends the ranks SIGTERM: every rank learns of it in the same
  /// step (the flag travels with the gradients), rank 0 saves the checkpoint, the job ends
  /// non-zero with the usual message.
  @Test func stoppingMpirunSavesACheckpoint() throws {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let job = try Job(
      ["-np", "2", try aconBinary().path] + Self.tiny(out, lr: "0.01")
        + ["--train-limit", "64", "--batch-size", "16", "--epochs", "200"])
    let metrics = out.appendingPathComponent("metrics.jsonl")
    let deadline = Date().addingTimeInterval(120)
    while !FileManager.default.fileExists(atPath: metrics.path) && Date() < deadline {
      usleep(100_000)
    }
    // What mpirun sends the ranks on Ctrl-C, here to rank 1 alone (this test runner leaves
    // mpirun's own signals blocked): rank 0 learns of it with the step's gradients.
    let rank1 = try #require(Self.rankProcess(1, parent: job.process.processIdentifier))
    kill(rank1, SIGTERM)
    let status = job.finish()
    #expect(status != 0)
    #expect(job.stderr.contains("acon: interrupted; checkpoint saved to"), "\(job.stderr)")
    let state = try #require(
      try SafeTensors.read(out.appendingPathComponent("checkpoint.safetensors")).metadata[
        "acon.training_state"])
    #expect(state.contains("\"worldSize\":2"))
  }

  /// Ranks started with different flags are stopped before training, each naming what differs.
  @Test func mismatchedSettingsAreDetectedAtStart() throws {
    let out = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: out) }
    let binary = try aconBinary().path
    let base = Self.tiny(out) + ["--train-limit", "64", "--batch-size", "16", "--epochs", "1"]
    let r = try Self.mpirun(
      ["-np", "1", binary] + base + ["--seed", "1", ":", "-np", "1", binary] + base + [
        "--seed", "2",
      ])
    #expect(r.status != 0)
    #expect(
      r.stderr.contains("rank 1: settings differ from rank 0's: seed = 2 here, 1 on rank 0"),
      "\(r.stderr)")
    #expect(r.stderr.contains("the ranks were started with different settings"))
    #expect(
      !FileManager.default.fileExists(atPath: out.appendingPathComponent("metrics.jsonl").path))
  }

  /// Without mpirun, `acon train` never initialises MPI (which would create its session
  /// directory under TMPDIR).
  @Test func plainTrainingDoesNotStartMPI() throws {
    let (out, tmp) = (temporaryDirectory(), temporaryDirectory())
    defer { for d in [out, tmp] { try? FileManager.default.removeItem(at: d) } }
    let process = Process()
    process.executableURL = try aconBinary()
    process.arguments =
      Self.tiny(out) + ["--train-limit", "16", "--batch-size", "16", "--epochs", "1"]
    var environment = ProcessInfo.processInfo.environment
    environment["TMPDIR"] = tmp.path
    for key in environment.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") {
      environment[key] = nil
    }
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).isEmpty)
  }

  /// The pid of the child of `parent` whose environment says OMPI_COMM_WORLD_RANK=`rank`.
  static func rankProcess(_ rank: Int, parent: Int32) -> pid_t? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
      return nil
    }
    for entry in entries {
      guard let pid = Int32(entry),
        let status = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = status.lastIndex(of: ")")
      else { continue }
      let fields = status[status.index(after: close)...].split(separator: " ")
      guard fields.count > 2, Int32(fields[1]) == parent,
        let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ")
      else { continue }
      let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
      if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
    }
    return nil
  }
}
