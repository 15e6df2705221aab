/// The collectives data-parallel training needs from a group of processes (one per replica),
/// each identified by its rank in `0..<size`.
///
/// Every member must call the same collectives in the same order with the same element counts,
/// or the group hangs; an implementation bounds each wait and ends the whole job when a member
/// stops answering. `ACONDistributed.MPIProcessGroup` implements it over MPI.
public protocol ProcessGroup: AnyObject {
  /// This process's rank, `0..<size`.
  var rank: Int { get }
  /// How many processes the group holds.
  var size: Int { get }
  /// `values` of rank `root`, on every rank (the other ranks pass as many elements, which are
  /// ignored).
  func broadcast(_ values: [Float], root: Int) throws -> [Float]
  /// The bytes of rank `root` on every rank (the others may pass anything: the length travels).
  func broadcastBytes(_ bytes: [UInt8], root: Int) throws -> [UInt8]
  /// The elementwise sum of `values` over the ranks, the same on every rank.
  func allreduceSum(_ values: [Double]) throws -> [Double]
  /// Starts the elementwise sum of `values` over the ranks; the caller goes on working and
  /// collects the result with ``PendingReduction/wait()``. Reductions complete in the order
  /// they were started.
  func startAllreduceSum(_ values: [Float]) throws -> any PendingReduction
  /// Every rank's `values` (the same count on each), in rank order.
  func allgather(_ values: [Double]) throws -> [[Double]]
  /// Ends the whole job at once (every rank), with `message` on standard error.
  func abort(_ message: String, code: Int32) -> Never
}

/// A sum over the ranks started by ``ProcessGroup/startAllreduceSum(_:)``.
public protocol PendingReduction: AnyObject {
  /// Lets the transfer advance (engines without a progress thread move only inside calls).
  func progress()
  /// Waits for the sum (bounded: a member that stops answering ends the job).
  func wait() throws -> [Float]
}

/// An error of the process group that ends training on every rank.
public enum ProcessGroupError: Error, CustomStringConvertible {
  /// The ranks were started with different settings.
  case configurationMismatch(String)
  /// The replicas' weights diverged (``DataParallelOptions/verifyReplicas``).
  case replicasDiverged(String)
  /// The communication layer failed.
  case communication(String)

  public var description: String {
    switch self {
    case .configurationMismatch(let m), .replicasDiverged(let m), .communication(let m): return m
    }
  }
}
