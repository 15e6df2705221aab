/// Batch statistics over the whole batch of a data-parallel step (PyTorch's `SyncBatchNorm`),
/// when each replica holds only its slice of the batch.
///
/// Two hooks, at the only places where a batch norm in training reads its batch as a whole:
/// the per-channel statistics forward (``combine(count:mean:variance:)``), and the per-channel
/// gradient sums backward (``sum(_:)``), between which and the input gradient nothing else
/// depends on the batch. Every replica must run the same batch norms in the same order.
public protocol BatchNormReplicaReducer: AnyObject, Sendable {
  /// The whole batch's per-channel element count, mean and biased variance, from this
  /// replica's (`count` elements per channel). The same result on every replica.
  func combine(count: Int, mean: [Float], variance: [Float]) -> (
    count: Int, mean: [Float], variance: [Float]
  )
  /// The elementwise sum of `values` over the replicas.
  func sum(_ values: [Float]) -> [Float]
}

/// The reducer the batch norms of the current scope use (nil: statistics of the local batch).
public enum BatchNormReplicas {
  @TaskLocal public static var reducer: (any BatchNormReplicaReducer)?
}

/// Runs `body` with every training-mode batch norm reducing its statistics through `reducer`.
/// The fused batch norm + ACON op has no such path and refuses to run inside (run the layers
/// unfused: `withoutLayerFusion(_:)` in ACONNN).
public func withBatchNormAcrossReplicas<T>(
  _ reducer: any BatchNormReplicaReducer, _ body: () throws -> T
) rethrows -> T {
  try BatchNormReplicas.$reducer.withValue(reducer, operation: body)
}
