import ACONData
import ACONTensor
import ACONTraining
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Faults while training, through the real `acon` binary: kill -9 at random moments and inside
/// the checkpoint write, a full disk, an unwritable or vanished output folder, a data set that
/// disappears, SIGTERM. The runs train MobileNetV1-0.25 on a synthetic MNIST-layout data set
/// (64 training images of 28x28, so no download is needed): 8 batches of 8 per epoch.
// Needs the release binary: scripts/test.sh builds it (swift build -c release --product acon).
@Suite(
  "Faults while training", .serialized,
  .enabled(
    if: TestEnvironment.aconBuilt,
    "needs the acon binary: run `swift build -c release --product acon` first"))
struct FaultTests {
  static let iterations = 24

  /// The flags of every run: 3 epochs of 8 iterations, a checkpoint every `checkpointEvery`.
  static func arguments(out: URL, checkpointEvery: Int, epochs: Int = 3, lossLog: URL? = nil)
    -> [String]
  {
    var arguments = [
      "train", "--model", "mobilenetv1-0.25", "--activation", "acon-c", "--dataset", "mnist",
      "--data", FaultFixture.mnist.path, "--batch-size", "8", "--epochs", "\(epochs)", "--lr",
      "0.05",
      "--checkpoint-every", "\(checkpointEvery)", "--out", out.path, "--quiet",
    ]
    if let lossLog { arguments += ["--loss-log", lossLog.path] }
    return arguments
  }

  /// Losses of the uninterrupted run by iteration, and its wall time (made once).
  static let reference:
    Result<(losses: [Int: String], seconds: Double, checkpointBytes: Int), any Error> = Result {
      let out = FaultFixture.folder("reference")
      let log = out.appendingPathComponent("losses.txt")
      let start = Date()
      let r = try runACON(arguments(out: out, checkpointEvery: 1, lossLog: log))
      guard r.status == 0 else { throw CLIFailure("the reference run failed: \(r.stderr)") }
      let size =
        try FileManager.default.attributesOfItem(
          atPath: out.appendingPathComponent("checkpoint.safetensors").path)[.size] as! Int
      return (try lossLines(log), Date().timeIntervalSince(start), size)
    }

  /// The `ITERATION LOSS` lines of a loss log (a later line for the same iteration wins).
  static func lossLines(_ url: URL) throws -> [Int: String] {
    guard FileManager.default.fileExists(atPath: url.path) else { return [:] }
    var losses: [Int: String] = [:]
    for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
      let fields = line.split(separator: " ")
      if fields.count == 2, let i = Int(fields[0]) { losses[i] = String(fields[1]) }
    }
    return losses
  }

  /// Temporary files of interrupted atomic writes in `folder`.
  static func temporaries(_ folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter {
      $0.hasSuffix(".tmp")
    }
  }

  /// Resumes the run in `out` and checks that it continues from the checkpoint's iteration with
  /// exactly the reference's losses.
  func expectResumeMatchesReference(out: URL, reference: [Int: String], context: String) throws {
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    let (state, file) = try Checkpoint.readState(checkpoint)
    #expect(!file.tensors.isEmpty, "\(context): the checkpoint holds no tensors")
    let log = out.appendingPathComponent("resumed-losses.txt")
    let r = try runACON(Self.arguments(out: out, checkpointEvery: 1, lossLog: log) + ["--resume"])
    #expect(r.status == 0, "\(context): resume failed: \(r.stderr)")
    let resumed = try Self.lossLines(log)
    let expected =
      state.iteration < Self.iterations ? Array((state.iteration + 1)...Self.iterations) : []
    #expect(
      resumed.keys.sorted() == expected,
      "\(context): resumed from iteration \(state.iteration) but logged \(resumed.keys.sorted())")
    for (iteration, loss) in resumed {
      #expect(
        loss == reference[iteration],
        "\(context): iteration \(iteration): \(loss) after resuming, \(reference[iteration] ?? "none") uninterrupted"
      )
    }
    #expect(
      Self.temporaries(out).isEmpty,
      "\(context): stale temporary files left: \(Self.temporaries(out))")
  }

  @Test func killNineAtRandomMomentsAndInsideTheCheckpointWrite() throws {
    let reference = try Self.reference.get()
    #expect(reference.losses.keys.sorted() == Array(1...Self.iterations))
    var generator = SystemRandomNumberGenerator()
    var killedInsideWrite = 0
    var resumedRuns = 0
    // Even trials kill at a random moment of the run (some before the first checkpoint); odd
    // ones as soon as the temporary file of a checkpoint after the first appears, that is
    // between its creation and its rename.
    for trial in 0..<8 {
      let out = FaultFixture.folder("kill-\(trial)")
      let process = Process()
      process.executableURL = try aconBinary()
      process.arguments = Self.arguments(out: out, checkpointEvery: 1)
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      if trial % 2 == 0 {
        Thread.sleep(
          forTimeInterval: Double.random(
            in: 0.05...max(0.1, reference.seconds * 0.9), using: &generator))
      } else {
        let deadline = Date().addingTimeInterval(30)
        let checkpoint = out.appendingPathComponent("checkpoint.safetensors").path
        while process.isRunning && !FileManager.default.fileExists(atPath: checkpoint)
          && Date() < deadline
        { usleep(200) }
        while process.isRunning && Self.temporaries(out).isEmpty && Date() < deadline {
          usleep(200)
        }
      }
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      if !Self.temporaries(out).isEmpty { killedInsideWrite += 1 }
      guard
        FileManager.default.fileExists(
          atPath: out.appendingPathComponent("checkpoint.safetensors").path)
      else {
        // Killed before the first checkpoint: resuming says so.
        let r = try runACON(Self.arguments(out: out, checkpointEvery: 1) + ["--resume"])
        #expect(r.status != 0 && r.stderr.contains("no checkpoint to resume"), "\(r.stderr)")
        continue
      }
      try expectResumeMatchesReference(
        out: out, reference: reference.losses, context: "trial \(trial)")
      resumedRuns += 1
    }
    print(
      "kill -9: \(resumedRuns) of 8 kills left a checkpoint, \(killedInsideWrite) landed inside a checkpoint write"
    )
    #expect(killedInsideWrite >= 1, "no kill landed inside a checkpoint write")
    #expect(resumedRuns >= 4, "only \(resumedRuns) of 8 kills left a checkpoint")
  }

  @Test func sigtermSavesACheckpointAndResumesExactly() throws {
    let reference = try Self.reference.get()
    let out = FaultFixture.folder("sigterm")
    let log = out.appendingPathComponent("losses.txt")
    let process = Process()
    process.executableURL = try aconBinary()
    // Checkpoints only at epoch ends: the one after SIGTERM is the interrupt's.
    process.arguments = Self.arguments(out: out, checkpointEvery: 0, lossLog: log)
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && ((try? Self.lossLines(log))?.count ?? 0) < 3 && Date() < deadline {
      usleep(1000)
    }
    kill(process.processIdentifier, SIGTERM)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationReason == .exit, "acon died of SIGTERM instead of saving: \(stderr)")
    #expect(process.terminationStatus != 0)
    #expect(stderr.contains("interrupted; checkpoint saved"), "\(stderr)")
    let (state, _) = try Checkpoint.readState(out.appendingPathComponent("checkpoint.safetensors"))
    let logged = try Self.lossLines(log)
    #expect(
      state.iteration == logged.count,
      "the checkpoint stands at \(state.iteration), \(logged.count) iterations ran")
    #expect(state.iteration >= 3 && state.iteration < Self.iterations)
    try expectResumeMatchesReference(out: out, reference: reference.losses, context: "SIGTERM")
  }

  // A small tmpfs as --out needs root (or CAP_SYS_ADMIN) and mount(8).
  @Test(
    .enabled(
      if: TestEnvironment.canMountTmpfs,
      "needs permission to mount a small tmpfs (root): the full-disk test is skipped"))
  func fullDiskGivesAClearErrorAndKeepsThePreviousCheckpoint() throws {
    let reference = try Self.reference.get()
    let out = FaultFixture.folder("full-disk")
    // Room for one checkpoint and half another: the first write succeeds, the second cannot.
    let kilobytes = reference.checkpointBytes * 3 / 2 / 1024
    try TestEnvironment.mountTmpfs(at: out, options: "size=\(kilobytes)k")
    defer { TestEnvironment.unmount(out) }
    let r = try runACON(Self.arguments(out: out, checkpointEvery: 1))
    #expect(r.status != 0)
    #expect(r.stderr.contains("No space left on device"), "\(r.stderr)")
    #expect(r.stderr.contains("checkpoint.safetensors"), "\(r.stderr)")
    #expect(!r.stderr.contains("Fatal error"), "\(r.stderr)")
    let (state, _) = try Checkpoint.readState(out.appendingPathComponent("checkpoint.safetensors"))
    #expect(state.iteration == 1)
    #expect(Self.temporaries(out).isEmpty, "\(Self.temporaries(out))")
  }

  @Test func unwritableOrVanishedOutputFolderGivesAClearError() throws {
    // A folder that cannot exist: its parent is a file.
    let parent = FaultFixture.folder("unwritable")
    let file = parent.appendingPathComponent("plain-file")
    try Data("x".utf8).write(to: file)
    let underFile = try runACON(
      Self.arguments(out: file.appendingPathComponent("run"), checkpointEvery: 1))
    #expect(underFile.status != 0)
    #expect(
      underFile.stderr.contains("cannot create the output folder")
        && underFile.stderr.contains("Not a directory"), "\(underFile.stderr)")
    // A read-only folder (a read-only mount: root ignores permission bits).
    let readOnly = parent.appendingPathComponent("read-only")
    if TestEnvironment.canMountTmpfs {
      try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
      try TestEnvironment.mountTmpfs(at: readOnly, options: "ro,size=64k")
      defer { TestEnvironment.unmount(readOnly) }
      let r = try runACON(Self.arguments(out: readOnly, checkpointEvery: 1))
      #expect(r.status != 0)
      #expect(
        r.stderr.contains("cannot write to the output folder")
          && r.stderr.contains("Read-only file system"), "\(r.stderr)")
    } else if getuid() != 0 {
      try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
      chmod(readOnly.path, 0o555)
      defer { chmod(readOnly.path, 0o755) }
      let r = try runACON(Self.arguments(out: readOnly, checkpointEvery: 1))
      #expect(r.status != 0)
      #expect(r.stderr.contains("cannot write to the output folder"), "\(r.stderr)")
    }
    // The folder removed while the run writes checkpoints into it.
    let vanishing = FaultFixture.folder("vanishing")
    let (process, stderr) = try Self.removing(
      vanishing, once: vanishing.appendingPathComponent("checkpoint.safetensors"),
      from: Self.arguments(out: vanishing, checkpointEvery: 1, epochs: 50))
    #expect(process.terminationReason == .exit && process.terminationStatus != 0, "\(stderr)")
    #expect(stderr.contains("does the folder \(vanishing.path) still exist?"), "\(stderr)")
  }

  /// Runs `acon arguments`, removes `victim` once `file` exists (within 60 s), and waits for the
  /// run's end (killing it after another 60 s): the process and its standard error.
  static func removing(
    _ victim: URL, once file: URL, from arguments: [String]
  ) throws -> (process: Process, stderr: String) {
    let process = Process()
    process.executableURL = try aconBinary()
    process.arguments = arguments
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while process.isRunning && !FileManager.default.fileExists(atPath: file.path)
      && Date() < deadline
    { usleep(1000) }
    try FileManager.default.removeItem(at: victim)
    let watchdog = DispatchWorkItem { kill(process.processIdentifier, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    watchdog.cancel()
    return (process, stderr)
  }

  @Test func dataSetDisappearingMidRunGivesAClearError() throws {
    // An image folder is read image by image while training: remove it after the first checkpoint.
    let data = FaultFixture.folder("vanishing-images")
    try FaultFixture.writeImageFolder(at: data)
    let out = FaultFixture.folder("vanishing-images-run")
    let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
    let (process, stderr) = try Self.removing(
      data, once: checkpoint,
      from: [
        "train", "--model", "mobilenetv1-0.25", "--dataset", "imagefolder", "--data", data.path,
        "--batch-size", "2", "--epochs", "100", "--checkpoint-every", "1", "--out", out.path,
        "--quiet",
      ])
    #expect(process.terminationReason == .exit && process.terminationStatus != 0, "\(stderr)")
    #expect(stderr.contains(data.path) && stderr.contains("file not found"), "\(stderr)")
    #expect(!stderr.contains("Fatal error"), "\(stderr)")
    // The last checkpoint written before the data went is whole.
    _ = try Checkpoint.readState(checkpoint)
  }
}

struct CLIFailure: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// The synthetic data the fault tests train on, made once per test process.
enum FaultFixture {
  static let root: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-faults-\(getpid())")
    try? FileManager.default.removeItem(at: url)
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }()

  /// A fresh folder under the fixture root.
  static func folder(_ name: String) -> URL {
    let url = root.appendingPathComponent(name)
    try? FileManager.default.removeItem(at: url)
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  /// MNIST-layout IDX files (uncompressed): 64 training and 16 test images of 28x28 whose
  /// brightness follows the label, so that the loss moves.
  static let mnist: URL = {
    let url = folder("mnist")
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt8 {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return UInt8(truncatingIfNeeded: state >> 56)
    }
    func idx(_ dims: [Int], _ data: [UInt8]) -> Data {
      var bytes: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
      for d in dims {
        bytes += [
          UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF),
        ]
      }
      return Data(bytes + data)
    }
    for (prefix, count) in [("train", 64), ("t10k", 16)] {
      let labels = (0..<count).map { UInt8($0 % 10) }
      let pixels = labels.flatMap { label in (0..<(28 * 28)).map { _ in next() / 2 &+ label &* 12 }
      }
      try? idx([count, 28, 28], pixels).write(
        to: url.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
      try? idx([count], labels).write(to: url.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
    }
    return url
  }()

  /// `train/` and `val/` with two classes of four 16x16 PNGs each.
  static func writeImageFolder(at url: URL) throws {
    for split in ["train", "val"] {
      for (c, name) in ["ants", "bees"].enumerated() {
        let folder = url.appendingPathComponent(split).appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<4 {
          let pixels = (0..<(16 * 16 * 3)).map { UInt8(($0 * (i + 3) + c * 90) & 0xFF) }
          try ImageCodec.writePNG(
            pixels: pixels, width: 16, height: 16, channels: 3,
            to: folder.appendingPathComponent("\(i).png").path)
        }
      }
    }
  }
}
