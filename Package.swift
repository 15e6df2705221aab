// swift-tools-version: 6.2
// 6.2: SwiftPM accepts a dependency's `unsafeFlags` from this version on, so other packages can
// depend on this one by URL and version (the target-CPU flag below is such a flag).
import Foundation
import PackageDescription

/// The instruction set the numeric targets are compiled for, chosen on the machine that builds.
///
/// The hot loops are written with explicit SIMD types; a plain `swift build -c release` must
/// reach the vector ceilings without flags from the user, so the manifest picks the widest
/// level the building CPU has. `ACON_TARGET_CPU` overrides it: an LLVM CPU name
/// (`haswell`, `skylake-avx512`, `znver4`, ...), or `generic` for the baseline of the
/// architecture (a binary to copy to other machines). The `CPlatform` target checks at start-up
/// that the running CPU has what the binary was compiled for, and exits with a message
/// instead of dying on an illegal instruction (see `Sources/CPlatform/CPUCheck.c`).
struct InstructionSet {
  /// `-target-cpu` for the Swift compiler; nil for the architecture's baseline.
  var targetCPU: String?
  /// The x86-64 feature level the start-up check demands: 0 baseline, 3 AVX2 + FMA + BMI2,
  /// 4 that plus AVX-512 F/CD/BW/DQ/VL.
  var x86Level: Int

  /// Whether the target has fused multiply-add instructions: every arm64 CPU does; on x86-64,
  /// levels 3 and 4 (a CPU name not listed below counts as the baseline).
  var hasFusedMultiplyAdd: Bool {
    #if arch(x86_64)
      return x86Level >= 3
    #else
      return true
    #endif
  }

  static func chosen() -> InstructionSet {
    let override = ProcessInfo.processInfo.environment["ACON_TARGET_CPU"] ?? ""
    #if arch(x86_64)
      switch override {
      case "generic", "x86-64": return InstructionSet(targetCPU: nil, x86Level: 0)
      case "native": return InstructionSet(targetCPU: "native", x86Level: hostLevel())
      case "": break
      default: return InstructionSet(targetCPU: override, x86Level: level(ofNamedCPU: override))
      }
      switch hostLevel() {
      case 4: return InstructionSet(targetCPU: "skylake-avx512", x86Level: 4)
      case 3: return InstructionSet(targetCPU: "haswell", x86Level: 3)
      default: return InstructionSet(targetCPU: nil, x86Level: 0)
      }
    #else
      // arm64 and others: the architecture's baseline (NEON on arm64) needs no flag.
      let named = !override.isEmpty && override != "generic"
      return InstructionSet(targetCPU: named ? override : nil, x86Level: 0)
    #endif
  }

  /// The level of the building CPU, from the `flags` line of /proc/cpuinfo (Linux; elsewhere
  /// the baseline).
  static func hostLevel() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
      let colon = line.firstIndex(of: ":")
    else { return 0 }
    let flags = Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    guard ["avx2", "fma", "bmi2"].allSatisfy(flags.contains) else { return 0 }
    let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    return avx512.allSatisfy(flags.contains) ? 4 : 3
  }

  /// The level a named CPU implies, for the start-up check of an overridden build (0, no
  /// check, for names not listed).
  static func level(ofNamedCPU cpu: String) -> Int {
    let avx512 = [
      "skylake-avx512", "skx", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
      "icelake-server", "rocketlake", "tigerlake", "sapphirerapids", "emeraldrapids",
      "graniterapids", "znver4", "znver5",
    ]
    let avx2 = [
      "haswell", "core-avx2", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
      "znver1", "znver2", "znver3",
    ]
    return avx512.contains(cpu) ? 4 : avx2.contains(cpu) ? 3 : 0
  }
}

let instructionSet = InstructionSet.chosen()
// `ACON_VECTOR16`: the kernels' wide loops use 16-float vectors (`WideFloat` in ACONKernels),
// decided by the same level as the start-up check and `InstructionSet.compiled`, so the vector
// width and the instruction set cannot disagree.
// `ACON_UNFUSED_MULTIPLY_ADD`: the kernels' `plusProduct` is a multiply and an add, not a call
// to libm's `fmaf` per lane, on targets without FMA (see Sources/ACONKernels/MultiplyAdd.swift).
let vectorFlags: [SwiftSetting] =
  (instructionSet.targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? [])
  + (instructionSet.x86Level >= 4 ? [.define("ACON_VECTOR16")] : [])
  + (instructionSet.hasFusedMultiplyAdd ? [] : [.define("ACON_UNFUSED_MULTIPLY_ADD")])
  + [.swiftLanguageMode(.v5)]
let commonFlags: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
  name: "ACON",
  // Linux is where the package is built and tested; macOS 15 is the first with the
  // `Synchronization` module's `Atomic` the kernels' worker pool uses (not tested there).
  platforms: [.macOS(.v15)],
  products: [
    .library(
      name: "ACON",
      targets: [
        "ACONKernels", "ACONTensor", "ACONNN", "ACONModels", "ACONData", "ACONTraining",
        "ACONInterop",
      ]),
    .executable(name: "acon", targets: ["ACONCLI"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // `swift package generate-documentation` (scripts/docs.sh); no target depends on it.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
  ],
  targets: [
    // System libraries (Debian: libdnnl-dev, zlib1g-dev, libpng-dev, libjpeg-dev). oneDNN
    // gives the matrix products (its sgemm dispatches to AVX-512 at run time; see BLAS.swift).
    .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
    .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
    .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
    .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
    // The setjmp/longjmp error shim libjpeg needs (Swift cannot express a non-returning hook).
    .target(name: "CImageDecode", dependencies: ["CJPEG"]),
    // The processor's spin-wait hint and affinity for the kernels' worker threads, and the
    // start-up check that the CPU has the instruction set the kernels were compiled for.
    .target(
      name: "CPlatform",
      cSettings: [.define("ACON_REQUIRED_X86_LEVEL", to: String(instructionSet.x86Level))]),
    // Open MPI (Debian: libopenmpi-dev), for data-parallel training under `mpirun`.
    .systemLibrary(
      name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]
    ),
    // Layer 1: CPU kernels. The only code with unsafe pointers and SIMD.
    .target(name: "ACONKernels", dependencies: ["CDNNL", "CPlatform"], swiftSettings: vectorFlags),
    // Layer 2: tensors, automatic differentiation, tensor files.
    .target(name: "ACONTensor", dependencies: ["ACONKernels"], swiftSettings: vectorFlags),
    // Layer 3: modules, layers, the ACON family, losses.
    .target(
      name: "ACONNN", dependencies: ["ACONTensor"], swiftSettings: vectorFlags),
    // Layer 4: the model zoo.
    .target(
      name: "ACONModels", dependencies: ["ACONNN", "ACONTensor"], swiftSettings: commonFlags),
    // Layer 5: data sets and loaders.
    .target(
      name: "ACONData", dependencies: ["ACONTensor", "CZlib", "CJPEG", "CPNG", "CImageDecode"],
      swiftSettings: vectorFlags),
    // Layer 6: optimizers, schedules, the training loop, checkpoints, metrics.
    .target(
      name: "ACONTraining",
      dependencies: ["ACONModels", "ACONData", "ACONNN", "ACONTensor"],
      swiftSettings: commonFlags),
    // PyTorch checkpoints read and written without Python, ONNX export.
    .target(
      name: "ACONInterop", dependencies: ["ACONModels", "ACONNN", "ACONTensor"],
      swiftSettings: commonFlags),
    // The MPI process group behind data-parallel training (`mpirun -np K acon train`).
    .target(
      name: "ACONDistributed", dependencies: ["ACONTraining", "CMPI"], swiftSettings: commonFlags),
    // The `acon` command-line tool: no math of its own.
    .executableTarget(
      name: "ACONCLI",
      dependencies: [
        "ACONTraining", "ACONInterop", "ACONDistributed", "ACONData", "ACONModels", "ACONNN",
        "ACONTensor",
        // The kernel benchmarks (`bench-op`, `bench-activation`) time kernels directly.
        "ACONKernels",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: vectorFlags),
    // Helpers shared by the test targets: finite-difference gradient checks, golden files.
    .target(
      name: "ACONTestSupport", dependencies: ["ACONTensor", "ACONKernels"],
      path: "Tests/ACONTestSupport",
      swiftSettings: commonFlags),
    .testTarget(
      name: "ACONKernelsTests", dependencies: ["ACONKernels", "ACONTensor", "ACONTestSupport"],
      swiftSettings: commonFlags),
    .testTarget(
      name: "ACONTensorTests", dependencies: ["ACONTensor", "ACONKernels", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONNNTests",
      dependencies: ["ACONNN", "ACONTensor", "ACONKernels", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONModelsTests",
      dependencies: ["ACONModels", "ACONTraining", "ACONNN", "ACONTensor", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONDataTests", dependencies: ["ACONData", "ACONTensor", "CZlib", "ACONTestSupport"],
      swiftSettings: commonFlags),
    .testTarget(
      name: "ACONTrainingTests",
      dependencies: [
        "ACONTraining", "ACONData", "ACONModels", "ACONNN", "ACONTensor", "ACONTestSupport",
      ],
      swiftSettings: commonFlags),
    .testTarget(
      name: "ACONInteropTests",
      dependencies: ["ACONInterop", "ACONModels", "ACONNN", "ACONTensor", "ACONTestSupport"],
      resources: [.copy("Fixtures")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONCLITests",
      dependencies: [
        "ACONCLI", "ACONKernels", "ACONTensor", "ACONNN", "ACONModels", "ACONData", "ACONTraining",
      ],
      swiftSettings: commonFlags),
  ]
)
