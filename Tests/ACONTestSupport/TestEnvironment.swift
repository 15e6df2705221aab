import Foundation

/// What a test needs from the machine beyond the package, so that a test whose need is missing is
/// skipped with a message naming it (`.enabled(if:)`) instead of failing obscurely under a plain
/// `swift test` on a machine that `scripts/setup.sh` has not prepared.
public enum TestEnvironment {
  /// Debian's dataset-fashion-mnist in its standard place (scripts/setup.sh installs it).
  public static var fashionMNISTInstalled: Bool {
    let root = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte"
    return FileManager.default.fileExists(atPath: root + ".gz")
      || FileManager.default.fileExists(atPath: root)
  }
}
