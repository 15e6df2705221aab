import ACONTensor

/// Running classification metrics over batches: mean loss, top-1 and top-5 accuracy.
public struct ClassificationMetrics: Codable, Equatable, Sendable {
  public private(set) var samples = 0
  private var lossSum = 0.0
  private var top1Hits = 0
  private var top5Hits = 0

  public init() {}

  /// Adds one batch: its mean loss, its logits `[N, K]` and labels.
  public mutating func add(loss: Float, logits: Tensor, labels: [Int]) {
    let (n, k) = (logits.shape[0], logits.shape[1])
    lossSum += Double(loss) * Double(n)
    samples += n
    let scores = logits.scalars
    for i in 0..<n {
      let row = scores[(i * k)..<((i + 1) * k)]
      let target = row[i * k + labels[i]]
      // Rank of the label: how many classes score strictly higher (ties favour the label).
      let higher = row.reduce(0) { $0 + ($1 > target ? 1 : 0) }
      if higher == 0 { top1Hits += 1 }
      if higher < 5 { top5Hits += 1 }
    }
  }

  /// The counts as numbers, to be summed over the replicas of data-parallel training
  /// (``init(summing:)`` reads them back).
  public var sums: [Double] { [Double(samples), lossSum, Double(top1Hits), Double(top5Hits)] }

  /// Metrics from ``sums`` (added up over several sets of metrics).
  public init(summing sums: [Double]) {
    samples = Int(sums[0].rounded())
    lossSum = sums[1]
    top1Hits = Int(sums[2].rounded())
    top5Hits = Int(sums[3].rounded())
  }

  /// Mean loss per sample.
  public var loss: Double { samples == 0 ? 0 : lossSum / Double(samples) }
  /// Fraction of samples whose label scored highest.
  public var top1: Double { samples == 0 ? 0 : Double(top1Hits) / Double(samples) }
  /// Fraction of samples whose label is among the five highest scores.
  public var top5: Double { samples == 0 ? 0 : Double(top5Hits) / Double(samples) }
}
