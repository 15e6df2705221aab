import ACONDistributed
import ACONTraining
import ArgumentParser
import Foundation

/// `acon train`'s data-parallel flags; they take effect under `mpirun -np K acon train ...`.
struct DataParallelFlags: ParsableArguments {
  @Flag(
    help:
      "Under mpirun: batch-norm statistics over every rank's batch (SyncBatchNorm); default: per rank, rank 0's running statistics broadcast each step."
  )
  var syncBatchnorm = false
  @Option(help: "Under mpirun: gradient bucket size in MB (the first bucket is 1 MB).")
  var bucketMb: Double = 4
  @Flag(help: "Under mpirun: reduce the gradients only after the whole backward (no overlap).")
  var noGradientOverlap = false
  @Flag(
    help: "Under mpirun: after every step, check that every rank's weights are bitwise rank 0's.")
  var verifyReplicas = false
  @Option(
    help:
      "Under mpirun: seconds a collective may wait for the other ranks before the job is aborted.")
  var collectiveTimeout: Double = 600

  func validate() throws {
    guard bucketMb > 0, bucketMb.isFinite else {
      throw ValidationError("--bucket-mb must be positive")
    }
    guard collectiveTimeout > 0 else {
      throw ValidationError("--collective-timeout must be positive")
    }
  }

  /// The replicas when the process runs under an MPI launcher; nil otherwise, without
  /// initialising MPI.
  func replicas() throws -> Replicas? {
    guard MPIProcessGroup.isLaunchedByMPI else { return nil }
    // mpirun turns Ctrl-C into SIGTERM for the ranks: make it the interrupt `acon train`
    // handles (every rank learns of it in the same step, saves and stops).
    signal(SIGTERM) { _ in raise(SIGINT) }
    var terminate = sigset_t()
    sigemptyset(&terminate)
    sigaddset(&terminate, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &terminate, nil)
    let group = try MPIProcessGroup(timeout: collectiveTimeout)
    var options = DataParallelOptions()
    options.synchronizeBatchNorm = syncBatchnorm
    options.bucketBytes = max(4096, Int(bucketMb * 1_048_576))
    options.overlap = !noGradientOverlap
    options.verifyReplicas = verifyReplicas
    return Replicas(group: group, dataParallel: DataParallel(group: group, options: options))
  }
}

/// This process's place in an `mpirun` job.
struct Replicas {
  let group: MPIProcessGroup
  let dataParallel: DataParallel

  /// Runs the training body; turns its failure into the job's end. Errors every rank meets at
  /// the same point (settings that differ, a non-finite mean loss, an interrupt, which every
  /// rank learns in the same step, diverged replicas) end each
  /// rank cleanly with status 1, rank 0 printing the message; any other error on one rank
  /// aborts the whole job at once (its peers would otherwise wait in their next collective).
  func run(_ body: () throws -> Void) throws {
    do {
      try body()
      group.finalize()
    } catch let error as ProcessGroupError {
      try endTogether(error.description)
    } catch let error as TrainingError {
      switch error {
      case .nonFiniteLoss, .interrupted: try endTogether(error.description)
      default: group.abort(error.description, code: 1)
      }
    } catch {
      group.abort("\(error)", code: 1)
    }
  }

  private func endTogether(_ message: String) throws -> Never {
    // The message first: after a Ctrl-C, mpirun may end the ranks during MPI_Finalize.
    if group.rank == 0 { standardError("acon: \(message)") }
    group.finalize()
    throw ExitCode(1)
  }
}
