import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What the command-line tests need from the machine, so that a test whose need is missing is
/// skipped with a message naming it (Swift Testing's `.enabled(if:)`) instead of failing obscurely
/// under a plain `swift test`.
enum TestEnvironment {
  /// The `acon` binary the tests run: beside the test bundle or in `.build/release`.
  static var aconBuilt: Bool { (try? aconBinary()) != nil }

  /// Debian's dataset-fashion-mnist (scripts/setup.sh installs it).
  static var fashionMNISTInstalled: Bool {
    FileManager.default.fileExists(
      atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
      || FileManager.default.fileExists(
        atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte")
  }

  /// Whether this process may mount a tmpfs (root in a container that allows it), tried once.
  static let canMountTmpfs: Bool = {
    let probe = FileManager.default.temporaryDirectory.appendingPathComponent(
      "acon-mount-probe-\(getpid())")
    try? FileManager.default.createDirectory(at: probe, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: probe) }
    guard (try? mountTmpfs(at: probe, options: "size=64k")) != nil else { return false }
    unmount(probe)
    return true
  }()

  /// Mounts a tmpfs with `options` (mount(8)'s -o) on the existing folder `url`.
  static func mountTmpfs(at url: URL, options: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/mount")
    process.arguments = ["-t", "tmpfs", "-o", options, "tmpfs", url.path]
    process.standardError = FileHandle.nullDevice
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw CLIFailure("mount -t tmpfs on \(url.path) failed")
    }
  }

  /// Unmounts what `mountTmpfs` mounted.
  static func unmount(_ url: URL) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/umount")
    process.arguments = [url.path]
    process.standardError = FileHandle.nullDevice
    try? process.run()
    process.waitUntilExit()
  }
}
