import ACONTensor
import Dispatch
import Foundation

/// Channel order of the tensors a loader yields.
public enum ChannelOrder: Sendable {
  /// Red, green, blue (torchvision's order).
  case rgb
  /// Blue, green, red: the reference ACON code's input convention (OpenCV order).
  case bgr
}

/// A sample the loader could not read and left out of its batch (with `skipUnreadable`).
public struct SkippedSample: Sendable, Equatable {
  /// Index of the sample in the data set.
  public let index: Int
  /// Why it could not be read.
  public let reason: String
}

/// One batch: images as an NCHW tensor and their labels.
public struct Batch {
  /// `[B, C, H, W]` floats (channel order and scale as the loader was configured).
  public let images: Tensor
  /// The label of each image.
  public let labels: [Int]
  /// The data-set index of each image.
  public let indices: [Int]
  /// Position of the batch in its epoch.
  public let batchIndex: Int
  /// The epoch the batch belongs to.
  public let epoch: Int
  /// Samples of this batch that failed to load and were left out.
  public let skipped: [SkippedSample]
}

/// One replica's share of every epoch in data-parallel training (PyTorch's
/// `DistributedSampler`): positions `rank`, `rank + count`, `rank + 2 count`, ... of the epoch's
/// order. The order does not depend on `count`, so batch `k` of every replica together covers
/// positions `k * B * count ..< (k + 1) * B * count` of it, for any `count`. With `padding`,
/// the order is first extended by wrapping around to a multiple of `count`, so that every
/// replica gets as many samples (and batches); without it, the replicas' shares differ by
/// at most one and together hold every sample once (evaluation).
public struct DataShard: Sendable, Equatable {
  /// This replica's index, `0..<count`.
  public let rank: Int
  /// How many replicas share the data.
  public let count: Int
  /// Whether the order is padded to a multiple of `count`.
  public let padding: Bool

  public init(rank: Int, count: Int, padding: Bool) {
    precondition(count >= 1 && rank >= 0 && rank < count, "rank \(rank) of \(count) replicas")
    self.rank = rank
    self.count = count
    self.padding = padding
  }

  /// All the data, in one process.
  public static let whole = DataShard(rank: 0, count: 1, padding: false)

  /// This replica's positions of an order of `total` samples.
  func positions(of total: Int) -> StrideTo<Int> {
    stride(from: rank, to: end(of: total), by: count)
  }

  /// How many samples this replica gets from `total`.
  func sampleCount(of total: Int) -> Int { max(0, (end(of: total) - rank + count - 1) / count) }

  private func end(of total: Int) -> Int { padding ? (total + count - 1) / count * count : total }
}

/// Cuts a data set into batches in a seeded, epoch-dependent order, loading and augmenting on a
/// background thread.
///
/// Reproducibility: the order of epoch `e` is a function of `(seed, e)` only, and the random
/// generator of each sample's augmentation is seeded from `(seed, e, index)`, so a run gives the
/// same batches whatever the prefetch depth, the number of workers or the thread timing, and a
/// run resumed at batch `k` of epoch `e` sees exactly the batches the full run would have.
public final class DataLoader: @unchecked Sendable {
  /// The samples.
  public let dataSet: any DataSet
  /// Samples per batch (the last batch may be smaller unless `dropLast`).
  public let batchSize: Int
  /// Whether each epoch uses its own permutation; otherwise the data-set order.
  public let shuffle: Bool
  /// Seed of orders and augmentations.
  public let seed: UInt64
  /// Whether an incomplete last batch is left out.
  public let dropLast: Bool
  /// Applied to every sample (as 0...255 floats, in the source's RGB order).
  public let transform: any ImageTransform
  /// Channel order of the output (only relevant for 3-channel images).
  public let channelOrder: ChannelOrder
  /// Factor applied to the output values: 1 keeps 0...255, 1/255 gives 0...1.
  public let scale: Float
  /// Batches prepared ahead on the background thread; 0 loads on the caller's thread.
  public let prefetch: Int
  /// Threads decoding the samples of one batch.
  public let workers: Int
  /// Whether a sample that fails to load is left out (and reported in ``Batch/skipped``)
  /// instead of ending the epoch with its error.
  public let skipUnreadable: Bool
  /// The share of each epoch this loader yields (``DataShard/whole`` outside data parallelism).
  public let shard: DataShard

  /// A loader over `dataSet`. The defaults give the reference's input convention: BGR, 0...255.
  public init(
    _ dataSet: any DataSet, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
    dropLast: Bool = false, transform: any ImageTransform = IdentityTransform(),
    channelOrder: ChannelOrder = .bgr, scale: Float = 1, prefetch: Int = 2,
    workers: Int = ProcessInfo.processInfo.activeProcessorCount, skipUnreadable: Bool = false,
    shard: DataShard = .whole
  ) throws {
    guard batchSize > 0 else {
      throw TensorError.invalidArgument(
        operation: "DataLoader", detail: "batch size must be positive, got \(batchSize)")
    }
    guard prefetch >= 0, workers > 0 else {
      throw TensorError.invalidArgument(
        operation: "DataLoader", detail: "prefetch \(prefetch) or workers \(workers) out of range")
    }
    self.dataSet = dataSet
    self.batchSize = batchSize
    self.shuffle = shuffle
    self.seed = seed
    self.dropLast = dropLast
    self.transform = transform
    self.channelOrder = channelOrder
    self.scale = scale
    self.prefetch = prefetch
    self.workers = workers
    self.skipUnreadable = skipUnreadable
    self.shard = shard
  }

  /// Batches in one epoch.
  public var batchesPerEpoch: Int {
    let samples = shard.sampleCount(of: dataSet.count)
    return dropLast ? samples / batchSize : (samples + batchSize - 1) / batchSize
  }

  /// A 64-bit mix of the inputs (SplitMix64's finaliser), to seed independent generators.
  static func mix(_ values: UInt64...) -> UInt64 {
    var h: UInt64 = 0x243F_6A88_85A3_08D3
    for v in values {
      var z = h ^ (v &+ 0x9E37_79B9_7F4A_7C15)
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      h = z ^ (z >> 31)
    }
    return h
  }

  /// The samples of `epoch` this loader yields, in order: its ``shard`` of ``globalOrder(epoch:)``.
  public func order(epoch: Int) -> [Int] {
    let global = globalOrder(epoch: epoch)
    guard shard != .whole, !global.isEmpty else { return global }
    return shard.positions(of: global.count).map { global[$0 % global.count] }
  }

  /// The order of the samples in `epoch` over all replicas: a Fisher-Yates permutation seeded
  /// by (seed, epoch), or the identity without shuffling.
  public func globalOrder(epoch: Int) -> [Int] {
    var order = Array(0..<dataSet.count)
    guard shuffle, order.count > 1 else { return order }
    var rng = RandomGenerator(
      seed: Self.mix(seed, 0x6F72_6465_72, UInt64(bitPattern: Int64(epoch))))
    for i in stride(from: order.count - 1, to: 0, by: -1) {
      order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
    return order
  }

  /// The generator for the augmentation of sample `index` in `epoch`.
  public func sampleGenerator(epoch: Int, index: Int) -> RandomGenerator {
    RandomGenerator(
      seed: Self.mix(seed, 0x6175_676D, UInt64(bitPattern: Int64(epoch)), UInt64(index)))
  }

  /// The batches of `epoch`, starting at batch `start` (for exact resume mid-epoch).
  public func batches(epoch: Int, startingAt start: Int = 0) -> BatchStream {
    BatchStream(loader: self, epoch: epoch, start: min(max(0, start), batchesPerEpoch))
  }

  /// Loads batch `k` of `epoch` on the calling thread (with the loader's workers).
  public func batch(_ k: Int, epoch: Int) throws -> Batch {
    try batch(k, epoch: epoch, order: order(epoch: epoch))
  }

  func batch(_ k: Int, epoch: Int, order: [Int]) throws -> Batch {
    guard k >= 0 && k < batchesPerEpoch else {
      throw TensorError.invalidArgument(
        operation: "DataLoader.batch", detail: "batch \(k) is outside 0..<\(batchesPerEpoch)")
    }
    let indices = Array(order[(k * batchSize)..<min(order.count, (k + 1) * batchSize)])
    let n = indices.count
    var images = [FloatImage?](repeating: nil, count: n)
    var labels = [Int](repeating: 0, count: n)
    var errors = [(any Error)?](repeating: nil, count: n)
    images.withUnsafeMutableBufferPointer { imagesBuf in
      labels.withUnsafeMutableBufferPointer { labelsBuf in
        errors.withUnsafeMutableBufferPointer { errorsBuf in
          let (imagesOut, labelsOut, errorsOut) = (imagesBuf, labelsBuf, errorsBuf)
          // Each slot is written by exactly one worker.
          let chunks = min(workers, n)
          let load = { (chunk: Int) in
            for j in (n * chunk / chunks)..<(n * (chunk + 1) / chunks) {
              do {
                let s = try self.dataSet.sample(indices[j])
                var rng = self.sampleGenerator(epoch: epoch, index: indices[j])
                imagesOut[j] = self.transform.apply(s.image.floatImage(), rng: &rng)
                labelsOut[j] = s.label
              } catch {
                errorsOut[j] = error
              }
            }
          }
          if chunks <= 1 {
            load(0)
          } else {
            DispatchQueue.concurrentPerform(iterations: chunks, execute: load)
          }
        }
      }
    }
    var skipped: [SkippedSample] = []
    for j in 0..<n {
      if let error = errors[j] {
        guard skipUnreadable else { throw error }
        skipped.append(SkippedSample(index: indices[j], reason: "\(error)"))
      }
    }
    let kept = (0..<n).filter { errors[$0] == nil }
    guard let first = kept.first.flatMap({ images[$0] }) else {
      throw TensorError.invalidArgument(
        operation: "DataLoader.batch",
        detail: "no sample of batch \(k) of epoch \(epoch) could be read: \(skipped[0].reason)")
    }
    let (c, h, w) = (first.channels, first.height, first.width)
    for j in kept {
      let image = images[j]!
      guard image.channels == c, image.height == h, image.width == w else {
        throw TensorError.shapeMismatch(
          operation: "DataLoader.batch",
          shapes: [[c, h, w], [image.channels, image.height, image.width]],
          detail:
            "samples \(indices[kept[0]]) and \(indices[j]) have different sizes after the transform; add a crop or resize"
        )
      }
    }
    // BGR reverses the planes of a 3-channel image.
    let tensor = try Tensor(
      batch: kept.map { images[$0]!.pixels }, sampleShape: [c, h, w],
      channelOrder: channelOrder == .bgr && c == 3 ? [2, 1, 0] : nil, scale: scale)
    return Batch(
      images: tensor, labels: kept.map { labels[$0] }, indices: kept.map { indices[$0] },
      batchIndex: k, epoch: epoch, skipped: skipped)
  }
}

/// The batches of one epoch, produced ahead on a background thread.
///
/// Read with `while let batch = try stream.next() { ... }`. Dropping the stream (or `cancel()`)
/// stops the background thread after the batch it is working on.
public final class BatchStream {
  /// Shared between the consumer and the producer thread, guarded by `condition`.
  final class State: @unchecked Sendable {
    let condition = NSCondition()
    var ready: [Int: Result<Batch, any Error>] = [:]
    var cancelled = false
  }

  let loader: DataLoader
  /// The epoch streamed.
  public let epoch: Int
  let order: [Int]
  var nextBatch: Int
  let end: Int
  let state = State()
  var started = false

  init(loader: DataLoader, epoch: Int, start: Int) {
    self.loader = loader
    self.epoch = epoch
    self.order = loader.order(epoch: epoch)
    self.nextBatch = start
    self.end = loader.batchesPerEpoch
  }

  deinit { cancel() }

  /// Stops the background thread.
  public func cancel() {
    state.condition.lock()
    state.cancelled = true
    state.condition.broadcast()
    state.condition.unlock()
  }

  func startProducer() {
    started = true
    let state = self.state
    let loader = self.loader
    let (epoch, order, first, end) = (self.epoch, self.order, self.nextBatch, self.end)
    let depth = loader.prefetch
    let thread = Thread {
      for k in first..<end {
        state.condition.lock()
        while !state.cancelled && state.ready.count >= depth { state.condition.wait() }
        let stop = state.cancelled
        state.condition.unlock()
        if stop { return }
        let result = Result { try loader.batch(k, epoch: epoch, order: order) }
        state.condition.lock()
        state.ready[k] = result
        state.condition.broadcast()
        state.condition.unlock()
        if case .failure = result { return }
      }
    }
    thread.name = "ACONData.prefetch"
    thread.start()
  }

  /// The next batch, or nil at the end of the epoch. Rethrows a loading error.
  public func next() throws -> Batch? {
    guard nextBatch < end else { return nil }
    if loader.prefetch > 0 && !started { startProducer() }
    let k = nextBatch
    nextBatch += 1
    if loader.prefetch == 0 {
      return try loader.batch(k, epoch: epoch, order: order)
    }
    state.condition.lock()
    defer { state.condition.unlock() }
    while state.ready[k] == nil { state.condition.wait() }
    let result = state.ready.removeValue(forKey: k)!
    state.condition.broadcast()
    if case .failure = result { nextBatch = end }
    return try result.get()
  }
}
