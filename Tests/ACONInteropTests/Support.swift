import ACONTensor
import Foundation
import Testing

/// A file of the test target's Fixtures folder (made by scripts/golden/pytorch_checkpoints.py).
func fixture(_ name: String) throws -> URL {
  let url = try #require(
    Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"),
    "missing fixture \(name)")
  return url
}

func fixtureBytes(_ name: String) throws -> [UInt8] {
  [UInt8](try Data(contentsOf: try fixture(name)))
}

/// The tensors PyTorch stored beside the checkpoints.
func expectedTensors() throws -> [String: Tensor] {
  try SafeTensors.read(try fixture("expected.safetensors")).tensors
}

/// A fresh temporary directory.
func scratchDirectory() -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "acon-interop-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// The built `acon` binary (scripts/test.sh builds it before the suite).
func aconBinary() throws -> URL {
  let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  var binary = directory.appendingPathComponent("acon")
  if !FileManager.default.fileExists(atPath: binary.path) {
    binary = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
      ".build/release/acon")
  }
  guard FileManager.default.fileExists(atPath: binary.path) else {
    throw TensorError.invalidFile(
      path: binary.path, detail: "acon is not built: run `swift build -c release --product acon`")
  }
  return binary
}

/// Runs a program and returns its exit status, standard output and standard error.
func run(_ executable: URL, _ arguments: [String]) throws -> (
  status: Int32, stdout: String, stderr: String
) {
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  let out = Pipe()
  process.standardOutput = out
  // Standard error goes to a file, so that a chatty child never blocks on a full pipe.
  let errURL = FileManager.default.temporaryDirectory.appendingPathComponent(
    "acon-stderr-\(UUID().uuidString)")
  _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
  let errHandle = try FileHandle(forWritingTo: errURL)
  process.standardError = errHandle
  try process.run()
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  try? errHandle.close()
  let errData = (try? Data(contentsOf: errURL)) ?? Data()
  try? FileManager.default.removeItem(at: errURL)
  return (
    process.terminationStatus, String(decoding: outData, as: UTF8.self),
    String(decoding: errData, as: UTF8.self)
  )
}

func runACON(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
  try run(try aconBinary(), arguments)
}

/// The largest absolute difference between two tensors of one shape, relative to the largest
/// magnitude of `expected`.
func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
  let a = actual.scalars
  let e = expected.scalars
  var worst: Float = 0
  var scale: Float = 0
  for (x, y) in zip(a, e) {
    worst = max(worst, abs(x - y))
    scale = max(scale, abs(y))
  }
  return worst / max(scale, 1e-12)
}
