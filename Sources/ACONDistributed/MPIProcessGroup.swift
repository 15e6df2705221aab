import ACONTraining
import CMPI
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The ranks of an `mpirun` job (MPI_COMM_WORLD) as a ``ACONTraining/ProcessGroup``.
///
/// Every collective is MPI's non-blocking form, polled until it completes or until
/// ``timeout`` seconds pass without completion; then the process prints which collective
/// stalled and calls `MPI_Abort`, which ends every rank. (A blocking MPI call would wait
/// forever on a peer that hangs; a peer that dies is reported by `mpirun` itself.) MPI runs
/// with `MPI_THREAD_FUNNELED`: only the thread that created the group calls it.
public final class MPIProcessGroup: ProcessGroup, @unchecked Sendable {
  public let rank: Int
  public let size: Int
  /// Seconds a collective may wait for the other ranks before the job is aborted.
  public let timeout: Double
  let communicator: MPI_Comm
  private var finalized = false

  /// Whether this process was started by an MPI launcher (`mpirun` sets `OMPI_COMM_WORLD_SIZE`;
  /// PMIx launchers such as `srun --mpi=pmix` set `PMIX_RANK`). Decided without touching MPI,
  /// so a plain `acon train` pays nothing for it.
  public static var isLaunchedByMPI: Bool {
    let environment = ProcessInfo.processInfo.environment
    return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
  }

  /// Initialises MPI (once per process) and joins MPI_COMM_WORLD.
  public init(timeout: Double = 600) throws {
    var provided: Int32 = 0
    let rc = MPI_Init_thread(nil, nil, acon_mpi_thread_funneled(), &provided)
    guard rc == acon_mpi_success() else {
      throw ProcessGroupError.communication("MPI_Init_thread failed (error \(rc))")
    }
    communicator = acon_mpi_comm_world()
    // Errors come back as codes (and become Swift errors) instead of killing the process
    // without a word.
    MPI_Comm_set_errhandler(communicator, acon_mpi_errors_return())
    var r: Int32 = 0
    var s: Int32 = 0
    MPI_Comm_rank(communicator, &r)
    MPI_Comm_size(communicator, &s)
    rank = Int(r)
    size = Int(s)
    self.timeout = timeout
  }

  /// Leaves MPI cleanly (every rank must call it, after its last collective).
  public func finalize() {
    guard !finalized else { return }
    finalized = true
    MPI_Finalize()
  }

  public func abort(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("acon: rank \(rank) of \(size): \(message)\n".utf8))
    MPI_Abort(communicator, code)
    exit(code)
  }

  func check(_ rc: Int32, _ what: String) throws {
    guard rc != acon_mpi_success() else { return }
    var buffer = [CChar](repeating: 0, count: Int(acon_mpi_max_error_string()) + 1)
    var length: Int32 = 0
    MPI_Error_string(rc, &buffer, &length)
    let text = String(
      decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    throw ProcessGroupError.communication("rank \(rank): \(what) failed: \(text)")
  }

  /// Polls `request` until it completes; after `timeout` seconds aborts the job naming `what`.
  /// A non-blocking collective advances only inside MPI calls (no progress thread), one
  /// fragment at a time, so the poll spins, as MPI's blocking calls do (yielding the processor
  /// between polls, on a loaded host, made a 5 MB reduction 50x slower); after a second, when
  /// a peer is clearly behind, it sleeps 1 ms between polls.
  func wait(_ request: inout MPI_Request?, _ what: String) throws {
    let start = DispatchTime.now().uptimeNanoseconds
    let limit = UInt64(timeout * 1e9)
    while true {
      var done: Int32 = 0
      try check(MPI_Test(&request, &done, acon_mpi_status_ignore()), what)
      if done != 0 { return }
      let elapsed = DispatchTime.now().uptimeNanoseconds - start
      if elapsed > limit {
        abort(
          "\(what) got no answer from the other ranks within \(Int(timeout)) s "
            + "(a rank has died or hangs); ending the job", code: 3)
      }
      if elapsed > 1_000_000_000 { usleep(1000) }
    }
  }

  public func broadcast(_ values: [Float], root: Int) throws -> [Float] {
    var result = values
    var request: MPI_Request? = acon_mpi_request_null()
    try result.withUnsafeMutableBufferPointer { buffer in
      try check(
        MPI_Ibcast(
          buffer.baseAddress, Int32(buffer.count), acon_mpi_float(), Int32(root), communicator,
          &request), "broadcast")
      try wait(&request, "broadcast of \(buffer.count) floats")
    }
    return result
  }

  public func broadcastBytes(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
    let length = try broadcast([Float(bitPattern: UInt32(bytes.count))], root: root)[0]
    var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length.bitPattern))
    guard !result.isEmpty else { return result }
    var request: MPI_Request? = acon_mpi_request_null()
    try result.withUnsafeMutableBufferPointer { buffer in
      try check(
        MPI_Ibcast(
          buffer.baseAddress, Int32(buffer.count), acon_mpi_byte(), Int32(root), communicator,
          &request), "broadcast")
      try wait(&request, "broadcast of \(buffer.count) bytes")
    }
    return result
  }

  public func allreduceSum(_ values: [Double]) throws -> [Double] {
    var result = [Double](repeating: 0, count: values.count)
    var request: MPI_Request? = acon_mpi_request_null()
    try values.withUnsafeBufferPointer { input in
      try result.withUnsafeMutableBufferPointer { output in
        try check(
          MPI_Iallreduce(
            input.baseAddress, output.baseAddress, Int32(values.count), acon_mpi_double(),
            acon_mpi_sum(), communicator, &request), "allreduce")
        try wait(&request, "allreduce of \(values.count) doubles")
      }
    }
    return result
  }

  public func allgather(_ values: [Double]) throws -> [[Double]] {
    var result = [Double](repeating: 0, count: values.count * size)
    var request: MPI_Request? = acon_mpi_request_null()
    try values.withUnsafeBufferPointer { input in
      try result.withUnsafeMutableBufferPointer { output in
        try check(
          MPI_Iallgather(
            input.baseAddress, Int32(values.count), acon_mpi_double(), output.baseAddress,
            Int32(values.count), acon_mpi_double(), communicator, &request), "allgather")
        try wait(&request, "allgather of \(values.count) doubles")
      }
    }
    return (0..<size).map { Array(result[($0 * values.count)..<(($0 + 1) * values.count)]) }
  }

  public func startAllreduceSum(_ values: [Float]) throws -> any PendingReduction {
    try MPIPendingReduction(group: self, values: values)
  }
}

/// An `MPI_Iallreduce` in flight over a buffer it owns (MPI reads and writes it until the
/// request completes, so it cannot be a Swift array's temporary storage).
final class MPIPendingReduction: PendingReduction {
  let group: MPIProcessGroup
  let buffer: UnsafeMutableBufferPointer<Float>
  var request: MPI_Request? = acon_mpi_request_null()
  var complete = false
  let count: Int

  init(group: MPIProcessGroup, values: [Float]) throws {
    self.group = group
    count = values.count
    buffer = .allocate(capacity: max(values.count, 1))
    _ = buffer.initialize(from: values)
    try group.check(
      MPI_Iallreduce(
        acon_mpi_in_place(), buffer.baseAddress, Int32(values.count), acon_mpi_float(),
        acon_mpi_sum(), group.communicator, &request), "allreduce")
  }

  deinit {
    if !complete {
      // Never free memory MPI may still write: finish the transfer first.
      try? group.wait(&request, "allreduce of \(count) floats")
    }
    buffer.deallocate()
  }

  func progress() {
    guard !complete else { return }
    var done: Int32 = 0
    MPI_Test(&request, &done, acon_mpi_status_ignore())
    if done != 0 { complete = true }
  }

  func wait() throws -> [Float] {
    if !complete {
      try group.wait(&request, "allreduce of \(count) floats")
      complete = true
    }
    return Array(buffer.prefix(count))
  }
}
