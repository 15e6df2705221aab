import ACONData
import ACONNN
import ACONTensor
import Foundation

/// Settings of data-parallel training that do not belong to the run's recipe (they may change
/// between a run and its resumption).
public struct DataParallelOptions: Sendable, Equatable {
  /// Batch-norm statistics over the whole batch of a step (every replica's slice), PyTorch's
  /// `SyncBatchNorm`; off: each replica normalises with its own slice and rank 0's running
  /// statistics are broadcast before every step (PyTorch DDP's default).
  public var synchronizeBatchNorm = false
  /// Size of the gradient buckets reduced together (the first holds 1 MB, as in DDP, so that
  /// communication starts early in the backward).
  public var bucketBytes = 4 << 20
  /// Start each bucket's reduction as soon as backward has produced its gradients; off: all
  /// of them after the backward (to measure the reduction alone).
  public var overlap = true
  /// After every step, compare a hash of every replica's parameters and stop if one differs.
  public var verifyReplicas = false

  public init() {}
}

/// PyTorch `DistributedDataParallel` semantics for ``Trainer`` over a ``ProcessGroup``: rank 0's
/// initial weights and buffers on every rank, a `DataShard` of every epoch per rank, gradients
/// averaged over the ranks in buckets reduced while the backward still runs, metrics summed
/// over the ranks, and (with ``DataParallelOptions/synchronizeBatchNorm``) batch statistics
/// over the whole step's batch.
///
/// Every rank calls the same methods in the same order: they are collectives.
public final class DataParallel: BatchNormReplicaReducer, @unchecked Sendable {
  /// The ranks.
  public let group: any ProcessGroup
  public let options: DataParallelOptions
  /// This process's rank.
  public var rank: Int { group.rank }
  /// The number of replicas, K.
  public var size: Int { group.size }
  /// Whether this rank writes files and prints (rank 0).
  public var isRoot: Bool { group.rank == 0 }

  /// The gradient buckets, in the order they are reduced.
  public private(set) var bucketSizes: [Int] = []
  /// Steps taken, and the seconds they spent waiting for gradient reductions once the
  /// backward had finished (what the overlap did not hide).
  public private(set) var steps = 0
  public private(set) var reductionWaitSeconds = 0.0

  private final class Bucket {
    let parameters: [Parameter]
    let count: Int
    var ready = 0
    var pending: (any PendingReduction)?
    var hadGradient: [Bool] = []
    init(_ parameters: [Parameter]) {
      self.parameters = parameters
      count = parameters.reduce(0) { $0 + $1.value.count }
    }
  }
  private var buckets: [Bucket] = []
  private var bucketOf: [ObjectIdentifier: Int] = [:]
  private var nextLaunch = 0
  /// Appended to the last bucket: this rank's loss and interrupt request, so that every rank
  /// learns the step's mean loss and any rank's Ctrl-C without a collective of their own.
  private var control: [Float] = [0, 0]
  private var launchError: (any Error)?

  public init(group: any ProcessGroup, options: DataParallelOptions = DataParallelOptions()) {
    self.group = group
    self.options = options
  }

  /// This rank's share of each epoch: padded for training (equal batches on every rank), not
  /// for evaluation (every test sample counted once).
  public func shard(padding: Bool) -> DataShard {
    DataShard(rank: rank, count: size, padding: padding)
  }

  /// The per-rank batch size that keeps the global batch of a run started with `previousSize`
  /// replicas at `batchSize` each, when it continues with `newSize`.
  public static func batchSize(
    _ batchSize: Int, resumedFrom previousSize: Int, on newSize: Int
  ) throws -> Int {
    let global = batchSize * previousSize
    guard global % newSize == 0 else {
      throw TrainingError.invalidConfiguration(
        "the run was started on \(previousSize) rank(s) with a global batch of \(global) "
          + "(\(batchSize) per rank), which \(newSize) ranks cannot share evenly; resume on a "
          + "number of ranks that divides \(global)")
    }
    return global / newSize
  }

  // MARK: Start

  /// Checks that every rank runs the same settings, copies rank 0's parameters and buffers to
  /// every rank and lays out the gradient buckets (reverse order of the parameters, the order
  /// backward produces them).
  public func start(model: Module, settings: [String: String]) throws {
    try checkSameSettings(settings)
    try broadcastState(of: model, parametersToo: true)
    buckets = []
    var current: [Parameter] = []
    var bytes = 0
    var limit = min(1 << 20, options.bucketBytes)
    for (_, p) in model.namedParameters().reversed() where p.isTrainable {
      current.append(p)
      bytes += p.value.count * 4
      if bytes >= limit {
        buckets.append(Bucket(current))
        (current, bytes, limit) = ([], 0, options.bucketBytes)
      }
    }
    if !current.isEmpty || buckets.isEmpty { buckets.append(Bucket(current)) }
    bucketOf = [:]
    for (i, b) in buckets.enumerated() {
      for p in b.parameters { bucketOf[ObjectIdentifier(p)] = i }
    }
    bucketSizes = buckets.map(\.count)
  }

  /// Compares `settings` with rank 0's; every rank throws if any differs, and each differing
  /// rank prints what differs.
  func checkSameSettings(_ settings: [String: String]) throws {
    let mine = try JSONEncoder.sortedKeys.encode(settings)
    let rootBytes = try group.broadcastBytes(Array(mine), root: 0)
    let root = try JSONDecoder().decode([String: String].self, from: Data(rootBytes))
    let differences = Set(root.keys).union(settings.keys).sorted().compactMap {
      key -> String? in
      root[key] == settings[key]
        ? nil : "\(key) = \(settings[key] ?? "(none)") here, \(root[key] ?? "(none)") on rank 0"
    }
    if !differences.isEmpty {
      FileHandle.standardError.write(
        Data(
          "acon: rank \(rank): settings differ from rank 0's: \(differences.joined(separator: "; "))\n"
            .utf8))
    }
    let flags = try group.allgather([differences.isEmpty ? 0 : 1])
    let differing = flags.indices.filter { flags[$0][0] != 0 }
    if !differing.isEmpty {
      throw ProcessGroupError.configurationMismatch(
        "the ranks were started with different settings: rank(s) "
          + differing.map(String.init).joined(separator: ", ")
          + " differ from rank 0 (each printed what differs); start every rank with the same flags and checkpoint"
      )
    }
  }

  /// Rank 0's parameters and buffers on every rank (after weights were loaded on rank 0 alone).
  public func broadcastParameters(of model: Module) throws {
    try broadcastState(of: model, parametersToo: true)
  }

  /// Rank 0's buffers (and parameters) on every rank.
  func broadcastState(of model: Module, parametersToo: Bool) throws {
    var tensors: [(set: (Tensor) -> Void, value: Tensor)] = []
    if parametersToo {
      for (_, p) in model.namedParameters() { tensors.append(({ p.value = $0 }, p.value)) }
    }
    for (_, b) in model.namedBuffers() { tensors.append(({ b.value = $0 }, b.value)) }
    guard !tensors.isEmpty else { return }
    let flat = try group.broadcast(tensors.flatMap(\.value.scalars), root: 0)
    var offset = 0
    for (set, value) in tensors {
      set(Tensor(shape: value.shape, values: Array(flat[offset..<(offset + value.count)])))
      offset += value.count
    }
  }

  // MARK: A step

  /// Runs the step's forward: after rank 0's buffers are copied to every rank (per-rank batch
  /// norm), or with batch statistics over the replicas (synchronised batch norm).
  public func forward<T>(model: Module, _ body: () throws -> T) throws -> T {
    if options.synchronizeBatchNorm {
      return try withBatchNormAcrossReplicas(self, body)
    }
    try broadcastState(of: model, parametersToo: false)
    return try body()
  }

  /// Back-propagates `loss` and averages the gradients over the ranks, reducing each bucket as
  /// soon as its gradients exist. Returns the mean of the ranks' losses and whether any rank
  /// asked to stop (Ctrl-C), so that every rank decides alike.
  public func backward(
    _ loss: Tensor, localLoss: Float, interrupt: Bool
  ) throws -> (loss: Float, interrupt: Bool) {
    control = [localLoss, interrupt ? 1 : 0]
    nextLaunch = 0
    launchError = nil
    for b in buckets {
      b.ready = 0
      b.pending = nil
    }
    try loss.backward(
      parameterGradientReady: options.overlap ? { [self] in gradientReady($0) } : nil)
    if let launchError { throw launchError }
    let start = DispatchTime.now().uptimeNanoseconds
    while nextLaunch < buckets.count { try launch(buckets[nextLaunch]) }
    var tail: [Float] = []
    let scale = 1 / Float(size)
    for b in buckets {
      let sums = try b.pending!.wait()
      b.pending = nil
      var offset = 0
      for (p, had) in zip(b.parameters, b.hadGradient) {
        let n = p.value.count
        if had {
          p.grad = Tensor(
            shape: p.value.shape, values: sums[offset..<(offset + n)].map { $0 * scale })
        }
        offset += n
      }
      if b === buckets.last { tail = Array(sums[offset...]) }
    }
    reductionWaitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    steps += 1
    return (tail[0] * scale, tail[1] > 0)
  }

  private func gradientReady(_ p: Parameter) {
    guard launchError == nil, let i = bucketOf[ObjectIdentifier(p)] else { return }
    buckets[i].ready += 1
    do {
      // Buckets start in order on every rank (MPI matches collectives by order).
      while nextLaunch < buckets.count,
        buckets[nextLaunch].ready == buckets[nextLaunch].parameters.count
      {
        try launch(buckets[nextLaunch])
      }
    } catch {
      launchError = error
    }
    for b in buckets[..<nextLaunch] { b.pending?.progress() }
  }

  private func launch(_ b: Bucket) throws {
    var values: [Float] = []
    values.reserveCapacity(b.count + 2)
    b.hadGradient = b.parameters.map { $0.grad != nil }
    for p in b.parameters {
      if let g = p.grad {
        values += g.scalars
      } else {
        values += [Float](repeating: 0, count: p.value.count)
      }
    }
    if b === buckets.last { values += control }
    b.pending = try group.startAllreduceSum(values)
    nextLaunch += 1
  }

  // MARK: After a step

  /// With ``DataParallelOptions/verifyReplicas``, throws when any rank's parameters differ
  /// bitwise from rank 0's.
  public func verifyReplicas(of model: Module, iteration: Int) throws {
    guard options.verifyReplicas else { return }
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for (_, p) in model.namedParameters() {
      for v in p.value.scalars {
        hash = (hash ^ UInt64(v.bitPattern)) &* 0x0000_0100_0000_01B3
      }
    }
    let all = try group.allgather([Double(hash >> 32), Double(hash & 0xFFFF_FFFF)])
    let differing = all.indices.filter { all[$0] != all[0] }
    if !differing.isEmpty {
      throw ProcessGroupError.replicasDiverged(
        "the replicas' parameters differ after iteration \(iteration): rank(s) "
          + differing.map(String.init).joined(separator: ", ") + " differ from rank 0")
    }
  }

  /// `metrics` summed over the ranks.
  public func sum(_ metrics: ClassificationMetrics) throws -> ClassificationMetrics {
    ClassificationMetrics(summing: try group.allreduceSum(metrics.sums))
  }

  /// The settings every rank must share: the run's configuration (flattened to dotted keys),
  /// the state it starts from and the data-parallel options.
  public func settings(configuration: TrainingConfiguration, state: TrainingState) throws
    -> [String: String]
  {
    var result: [String: String] = [:]
    func flatten(_ value: Any, _ key: String) {
      if let d = value as? [String: Any] {
        for (k, v) in d { flatten(v, key.isEmpty ? k : "\(key).\(k)") }
      } else {
        result[key] = "\(value)"
      }
    }
    let json = try JSONSerialization.jsonObject(with: JSONEncoder.sortedKeys.encode(configuration))
    flatten(json, "")
    result["resume.iteration"] = "\(state.iteration)"
    result["resume.epoch"] = "\(state.epoch)"
    result["sync-batchnorm"] = "\(options.synchronizeBatchNorm)"
    result["bucket-bytes"] = "\(options.bucketBytes)"
    result["overlap"] = "\(options.overlap)"
    result["verify-replicas"] = "\(options.verifyReplicas)"
    return result
  }

  // MARK: BatchNormReplicaReducer

  /// Chan's parallel combination of the ranks' (count, mean, biased variance), in rank order
  /// and in Float64, so that every rank gets the same bits.
  public func combine(count: Int, mean: [Float], variance: [Float]) -> (
    count: Int, mean: [Float], variance: [Float]
  ) {
    let c = mean.count
    let all = collective {
      try group.allgather([Double(count)] + mean.map(Double.init) + variance.map(Double.init))
    }
    let total = all.reduce(0.0) { $0 + $1[0] }
    var outMean = [Float](repeating: 0, count: c)
    var outVariance = [Float](repeating: 0, count: c)
    for ch in 0..<c {
      var m = 0.0
      for r in all { m += r[0] * r[1 + ch] }
      m /= total
      var squares = 0.0
      for r in all {
        let d = r[1 + ch] - m
        squares += r[0] * (r[1 + c + ch] + d * d)
      }
      outMean[ch] = Float(m)
      outVariance[ch] = Float(squares / total)
    }
    return (Int(total), outMean, outVariance)
  }

  public func sum(_ values: [Float]) -> [Float] {
    collective { try group.allreduceSum(values.map(Double.init)) }.map(Float.init)
  }

  /// A collective inside a pullback cannot throw: a failure ends the job.
  private func collective<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { group.abort("batch norm across replicas: \(error)", code: 3) }
  }
}
