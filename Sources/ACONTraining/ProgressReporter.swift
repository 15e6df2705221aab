import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Progress of a training run on standard error: a live bar on a terminal, plain log lines
/// (every tenth of an epoch) otherwise.
public struct ProgressReporter {
  /// Whether anything is printed.
  public var enabled: Bool
  /// Whether standard error is a terminal.
  public let interactive: Bool
  private var epoch = 0
  private var epochs = 0
  private var batches = 0
  private var started = Date()
  private var startBatch = 0

  public init(enabled: Bool = true) {
    self.enabled = enabled
    self.interactive = isatty(STDERR_FILENO) != 0
  }

  mutating func startEpoch(_ epoch: Int, of epochs: Int, batches: Int, done: Int) {
    self.epoch = epoch
    self.epochs = epochs
    self.batches = batches
    self.started = Date()
    self.startBatch = done
  }

  func iteration(_ batch: Int, loss: Double, top1: Double, imagesPerSecond: Double) {
    guard enabled else { return }
    let elapsed = Date().timeIntervalSince(started)
    let doneHere = max(1, batch - startBatch)
    let eta = elapsed / Double(doneHere) * Double(max(0, batches - batch))
    let stats = String(
      format: "loss %.4f  top1 %.2f%%  %.0f img/s  ETA %@", loss, top1 * 100, imagesPerSecond,
      Self.clock(eta))
    if interactive {
      let width = 30
      let filled = batches > 0 ? width * batch / batches : width
      let bar =
        String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
      FileHandle.standardError.write(
        "\r\u{1B}[Kepoch \(epoch)/\(epochs) [\(bar)] \(batch)/\(batches)  \(stats)".data(
          using: .utf8)!)
    } else if batches < 10 || batch % max(1, batches / 10) == 0 || batch == batches {
      FileHandle.standardError.write(
        "epoch \(epoch)/\(epochs) batch \(batch)/\(batches)  \(stats)\n".data(using: .utf8)!)
    }
  }

  func endEpoch(_ m: EpochMetrics) {
    guard enabled else { return }
    if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) }
    let line = String(
      format:
        "epoch %d: train loss %.4f top1 %.2f%% | test loss %.4f top1 %.2f%% top5 %.2f%% | %.0f img/s, %.1f s",
      m.epoch, m.trainLoss, m.trainTop1 * 100, m.testLoss, m.testTop1 * 100, m.testTop5 * 100,
      m.imagesPerSecond, m.seconds)
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
  }

  static func clock(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d", s / 60, s % 60)
  }
}
