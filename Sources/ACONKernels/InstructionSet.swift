import CPlatform

/// The instruction set the kernels were compiled for.
///
/// Package.swift chooses it on the building machine (the widest of AVX-512, AVX2 + FMA and the
/// architecture's baseline that the machine has, or `ACON_TARGET_CPU`); a start-up check refuses
/// to run on a CPU without it, with a message instead of an illegal instruction.
public enum InstructionSet: String, Sendable {
  /// The architecture's baseline (SSE2 on x86-64, NEON on arm64).
  case baseline
  /// AVX2, FMA and BMI2 (x86-64-v3).
  case avx2
  /// AVX-512 F, CD, BW, DQ and VL on top of AVX2 (x86-64-v4).
  case avx512

  /// What this build's kernels were compiled for.
  public static var compiled: InstructionSet {
    switch acon_required_x86_level() {
    case 4: return .avx512
    case 3: return .avx2
    default: return .baseline
    }
  }

  /// Floats in the vectors of the kernels' wide loops (``WideFloat``): 16 with AVX-512, else 8.
  public static var vectorLanes: Int { WideFloat.scalarCount }

  /// A name for reports: `AVX-512`, `AVX2 + FMA`, `baseline`.
  public var displayName: String {
    switch self {
    case .baseline: return "baseline"
    case .avx2: return "AVX2 + FMA"
    case .avx512: return "AVX-512"
    }
  }
}
