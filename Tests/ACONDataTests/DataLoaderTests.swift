import ACONData
import ACONTensor
import Testing

/// Sample i: a 6x5 RGB image whose channels hold (i, i + 1, i + 2) + pixel index; label i % 10.
/// Fails on the indices in `failing`.
struct SyntheticDataSet: DataSet {
  let count: Int
  var failing: Set<Int> = []
  var classCount: Int { 10 }
  func sample(_ index: Int) throws -> (image: PixelImage, label: Int) {
    if failing.contains(index) {
      throw TensorError.invalidFile(path: "sample\(index)", detail: "unreadable")
    }
    var p: [UInt8] = []
    for i in 0..<30 { for c in 0..<3 { p.append(UInt8((index + c + i) % 256)) } }
    return (PixelImage(width: 5, height: 6, channels: 3, pixels: p), index % 10)
  }
}

@Suite("DataLoader")
struct DataLoaderTests {
  static let augment = Compose([RandomResizedCrop(size: 4), ColorJitter(), RandomHorizontalFlip()])

  func all(_ loader: DataLoader, epoch: Int, from start: Int = 0) throws -> [Batch] {
    let stream = loader.batches(epoch: epoch, startingAt: start)
    var out: [Batch] = []
    while let b = try stream.next() { out.append(b) }
    return out
  }

  @Test func ordersAreSeededPermutations() throws {
    let data = SyntheticDataSet(count: 50)
    let a = try DataLoader(data, batchSize: 8, seed: 7)
    let b = try DataLoader(data, batchSize: 8, seed: 7)
    let c = try DataLoader(data, batchSize: 8, seed: 8)
    #expect(a.order(epoch: 0).sorted() == Array(0..<50))
    #expect(a.order(epoch: 3) == b.order(epoch: 3))
    #expect(a.order(epoch: 0) != a.order(epoch: 1))
    #expect(a.order(epoch: 0) != c.order(epoch: 0))
    #expect(try DataLoader(data, batchSize: 8, shuffle: false).order(epoch: 5) == Array(0..<50))
    #expect(a.batchesPerEpoch == 7)
    #expect(try DataLoader(data, batchSize: 8, dropLast: true).batchesPerEpoch == 6)
  }

  @Test func batchesDoNotDependOnPrefetchOrWorkers() throws {
    let data = SyntheticDataSet(count: 37)
    let reference = try all(
      DataLoader(data, batchSize: 8, seed: 3, transform: Self.augment, prefetch: 0, workers: 1),
      epoch: 2)
    #expect(reference.map { $0.images.shape[0] } == [8, 8, 8, 8, 5])
    for (prefetch, workers) in [(1, 2), (3, 3), (2, 8)] {
      let other = try all(
        DataLoader(
          data, batchSize: 8, seed: 3, transform: Self.augment, prefetch: prefetch, workers: workers
        ), epoch: 2)
      #expect(other.count == reference.count)
      for (x, y) in zip(reference, other) {
        #expect(
          x.images.scalars == y.images.scalars && x.labels == y.labels && x.indices == y.indices)
      }
    }
    // Another epoch augments differently.
    let next = try all(DataLoader(data, batchSize: 8, seed: 3, transform: Self.augment), epoch: 3)
    #expect(next[0].images.scalars != reference[0].images.scalars)
    let dropped = try all(DataLoader(data, batchSize: 8, seed: 3, dropLast: true), epoch: 2)
    #expect(dropped.count == 4 && dropped.allSatisfy { $0.labels.count == 8 })
  }

  @Test func resumeMidEpochEqualsTheTail() throws {
    let loader = try DataLoader(
      SyntheticDataSet(count: 45), batchSize: 6, seed: 11, transform: Self.augment)
    let full = try all(loader, epoch: 4)
    let tail = try all(loader, epoch: 4, from: 5)
    #expect(tail.count == full.count - 5)
    for (x, y) in zip(full.suffix(from: 5), tail) {
      #expect(
        x.batchIndex == y.batchIndex && x.images.scalars == y.images.scalars && x.labels == y.labels
      )
    }
    #expect(try all(loader, epoch: 4, from: 100).isEmpty)
    #expect(try loader.batch(2, epoch: 4).images.scalars == full[2].images.scalars)
  }

  @Test func channelOrderScaleAndLabels() throws {
    let data = SyntheticDataSet(count: 3)
    let bgr = try all(DataLoader(data, batchSize: 3, shuffle: false), epoch: 0)[0]
    #expect(bgr.images.shape == [3, 3, 6, 5])
    #expect(bgr.labels == [0, 1, 2])
    let v = bgr.images.scalars
    // Sample 1, pixel 0: RGB (1, 2, 3) comes out as B, G, R planes.
    let base = 1 * 90
    #expect(v[base] == 3 && v[base + 30] == 2 && v[base + 60] == 1)
    let rgb = try all(
      DataLoader(data, batchSize: 3, shuffle: false, channelOrder: .rgb, scale: 1.0 / 255), epoch: 0
    )[0]
    #expect(abs(rgb.images.scalars[base] - 1.0 / 255) < 1e-7)
  }

  @Test func subsetsAndErrors() throws {
    let data = SyntheticDataSet(count: 20)
    #expect(data.prefix(5).count == 5 && data.prefix(50).count == 20)
    #expect(try data.subset([3, 1]).sample(0).label == 3)
    #expect(throws: TensorError.self) { _ = try data.subset([20]) }
    #expect(throws: TensorError.self) { _ = try DataLoader(data, batchSize: 0) }
    let failing = SyntheticDataSet(count: 20, failing: [13])
    let loader = try DataLoader(failing, batchSize: 4, shuffle: false)
    let m = errorMessage { _ = try all(loader, epoch: 0) }
    #expect(m.contains("sample13"))
    let lenient = try all(
      DataLoader(failing, batchSize: 4, shuffle: false, skipUnreadable: true), epoch: 0)
    #expect(
      lenient[3].labels == [2, 4, 5] && lenient[3].skipped.map(\.index) == [13]
        && lenient[3].skipped[0].reason == "sample13: unreadable")
    // Varying sizes without a crop are a shape error, not a crash.
    struct Ragged: DataSet {
      var count: Int { 2 }
      var classCount: Int { 1 }
      func sample(_ i: Int) throws -> (image: PixelImage, label: Int) {
        (
          PixelImage(
            width: i + 1, height: 1, channels: 1, pixels: [UInt8](repeating: 0, count: i + 1)), 0
        )
      }
    }
    #expect(throws: TensorError.self) {
      _ = try DataLoader(Ragged(), batchSize: 2).batch(0, epoch: 0)
    }
    // Dropping a stream early stops its thread without hanging.
    let stream = try DataLoader(data, batchSize: 2, prefetch: 2).batches(epoch: 0)
    _ = try stream.next()
    stream.cancel()
  }
}
