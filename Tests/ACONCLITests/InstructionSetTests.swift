import ACONKernels
import Foundation
import Testing

/// The binary's start-up check, run on an emulated CPU that lacks what the build was compiled
/// for (Debian's qemu-user; `scripts/setup.sh` installs it): a clear message and exit status 70,
/// never SIGILL.
@Suite("Instruction set")
struct InstructionSetTests {
  static let qemu = "/usr/bin/qemu-x86_64"

  @Test(
    .enabled(
      if: FileManager.default.isExecutableFile(atPath: qemu),
      "needs qemu-user (/usr/bin/qemu-x86_64; scripts/setup.sh installs it)"))
  func olderCPUGetsAMessageNotSIGILL() throws {
    #if arch(x86_64)
      let level = InstructionSet.compiled
      // Westmere (2010): SSE4.2, no AVX at all.
      let process = Process()
      process.executableURL = URL(fileURLWithPath: Self.qemu)
      process.arguments = ["-cpu", "Westmere", try aconBinary().path, "info", "--list"]
      let err = Pipe()
      process.standardError = err
      process.standardOutput = Pipe()
      try process.run()
      let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      process.waitUntilExit()
      #expect(process.terminationReason == .exit, "killed by a signal: \(message)")
      if level == .baseline {
        // A baseline build has nothing to refuse: it runs.
        #expect(process.terminationStatus == 0, "\(message)")
      } else {
        #expect(process.terminationStatus == 70)
        #expect(message.contains("this CPU lacks AVX2"), "\(message)")
        #expect(message.contains("ACON_TARGET_CPU=generic"), "\(message)")
      }
    #endif
  }

  @Test func compiledLevelMatchesTheBuildingMachine() throws {
    // Unless the build was overridden, the manifest chose the widest level this machine has.
    guard ProcessInfo.processInfo.environment["ACON_TARGET_CPU"] == nil else { return }
    #if arch(x86_64)
      let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
      let flags = Set(
        (cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? "")
          .split(separator: " ").map(String.init))
      let want: InstructionSet =
        ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "bmi2"]
          .allSatisfy(flags.contains)
        ? .avx512
        : ["avx2", "fma", "bmi2"].allSatisfy(flags.contains)
          ? .avx2 : .baseline
      #expect(InstructionSet.compiled == want)
    #endif
  }
}
