import ACONData
import Testing

@Suite("DataShard")
struct DataShardTests {
  /// Every replica's batch k together is the single loader's batch k at K times the batch size,
  /// for any K: the global order does not depend on the number of replicas.
  @Test func replicasTogetherCoverTheGlobalBatches() throws {
    let data = SyntheticDataSet(count: 48)
    for k in [1, 2, 3, 4] {
      let whole = try DataLoader(data, batchSize: 4 * k, seed: 5, prefetch: 0)
      let shards = try (0..<k).map {
        try DataLoader(
          data, batchSize: 4, seed: 5, prefetch: 0,
          shard: DataShard(rank: $0, count: k, padding: true))
      }
      #expect(shards.allSatisfy { $0.batchesPerEpoch == whole.batchesPerEpoch })
      for batch in 0..<whole.batchesPerEpoch {
        let together = try shards.flatMap { try $0.batch(batch, epoch: 2).indices }
        #expect(together.sorted() == (try whole.batch(batch, epoch: 2).indices).sorted())
      }
    }
  }

  /// Padding repeats the start of the order so every replica gets as many samples; without it
  /// the shares are disjoint and hold every sample once.
  @Test func paddingAndDisjointShares() throws {
    let data = SyntheticDataSet(count: 10)
    let padded = try (0..<3).map {
      try DataLoader(
        data, batchSize: 2, seed: 1, shard: DataShard(rank: $0, count: 3, padding: true))
    }
    #expect(padded.map { $0.order(epoch: 0).count } == [4, 4, 4])
    let global = padded[0].globalOrder(epoch: 0)
    #expect(padded.flatMap { $0.order(epoch: 0) }.sorted() == (global + global.prefix(2)).sorted())
    let exact = try (0..<3).map {
      try DataLoader(
        data, batchSize: 2, shuffle: false, shard: DataShard(rank: $0, count: 3, padding: false))
    }
    #expect(exact.map { $0.order(epoch: 0) } == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]])
    #expect(exact.map(\.batchesPerEpoch) == [2, 2, 2])
  }
}
