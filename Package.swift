// swift-tools-version: 6.0
import PackageDescription

/// Hot loops are compiled for AVX2 + FMA (the machines we target: x86-64-v3 and later), so a plain
/// `swift build -c release` reaches the SIMD ceilings without extra flags from the user.
let vectorFlags: [SwiftSetting] = [
  .unsafeFlags(["-target-cpu", "haswell"]),
  .swiftLanguageMode(.v5),
]
let commonFlags: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
  name: "ACON",
  platforms: [.macOS(.v14)],
  products: [
    .library(
      name: "ACON",
      targets: [
        "ACONKernels", "ACONTensor", "ACONNN", "ACONModels", "ACONData", "ACONTraining", "ACONInterop",
      ]),
    .executable(name: "acon", targets: ["ACONCLI"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // `swift package generate-documentation` (scripts/docs.sh); no target depends on it.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
  ],
  targets: [
    // System libraries (Debian: libopenblas-dev, zlib1g-dev, libpng-dev, libjpeg-dev).
    .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
    .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
    .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
    .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
    // The setjmp/longjmp error shim libjpeg needs (Swift cannot express a non-returning hook).
    .target(name: "CImageDecode", dependencies: ["CJPEG"]),
    // The processor's spin-wait hint, for the kernels' worker threads.
    .target(name: "CPlatform"),
    // Open MPI (Debian: libopenmpi-dev), for data-parallel training under `mpirun`.
    .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    // Layer 1: CPU kernels. The only code with unsafe pointers and SIMD.
    .target(name: "ACONKernels", dependencies: ["CBLAS", "CPlatform"], swiftSettings: vectorFlags),
    // Layer 2: tensors, automatic differentiation, tensor files.
    .target(name: "ACONTensor", dependencies: ["ACONKernels"], swiftSettings: vectorFlags),
    // Layer 3: modules, layers, the ACON family, losses.
    .target(name: "ACONNN", dependencies: ["ACONTensor"], swiftSettings: vectorFlags),
    // Layer 4: the model zoo.
    .target(name: "ACONModels", dependencies: ["ACONNN"], swiftSettings: commonFlags),
    // Layer 5: data sets and loaders.
    .target(
      name: "ACONData", dependencies: ["ACONTensor", "CZlib", "CJPEG", "CPNG", "CImageDecode"], swiftSettings: vectorFlags),
    // Layer 6: optimizers, schedules, the training loop, checkpoints, metrics.
    .target(
      name: "ACONTraining", dependencies: ["ACONModels", "ACONData"], swiftSettings: commonFlags),
    // PyTorch checkpoints read and written without Python, ONNX export.
    .target(name: "ACONInterop", dependencies: ["ACONModels"], swiftSettings: commonFlags),
    // The MPI process group behind data-parallel training (`mpirun -np K acon train`).
    .target(name: "ACONDistributed", dependencies: ["ACONTraining", "CMPI"], swiftSettings: commonFlags),
    // The `acon` command-line tool: no math of its own.
    .executableTarget(
      name: "ACONCLI",
      dependencies: [
        "ACONTraining", "ACONInterop", "ACONDistributed",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: vectorFlags),
    // Helpers shared by the test targets: finite-difference gradient checks, golden files.
    .target(
      name: "ACONTestSupport", dependencies: ["ACONTensor"], path: "Tests/ACONTestSupport",
      swiftSettings: commonFlags),
    .testTarget(
      name: "ACONKernelsTests", dependencies: ["ACONKernels", "ACONTestSupport"], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONTensorTests", dependencies: ["ACONTensor", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONNNTests", dependencies: ["ACONNN", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONModelsTests", dependencies: ["ACONModels", "ACONTraining", "ACONTestSupport"],
      resources: [.copy("Golden")], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONDataTests", dependencies: ["ACONData", "ACONTestSupport"], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONTrainingTests", dependencies: ["ACONTraining", "ACONTestSupport"], swiftSettings: commonFlags),
    .testTarget(
      name: "ACONInteropTests", dependencies: ["ACONInterop", "ACONTestSupport"],
      resources: [.copy("Fixtures")], swiftSettings: commonFlags),
    .testTarget(name: "ACONCLITests", dependencies: ["ACONCLI"], swiftSettings: commonFlags),
  ]
)
