import ACONInterop
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

extension TestEnvironment {
  /// The release `acon` binary the command tests run (scripts/test.sh builds it).
  static var aconBuilt: Bool { (try? aconBinary()) != nil }
}

/// The committed fuzz inputs of the `pth` target (fuzz/corpus/pth: seeds; fuzz/regressions/pth:
/// inputs that once crashed the reader) through `PyTorchCheckpoint.decode`, as
/// scripts/fuzz/run.sh feeds them.
@Suite("Fuzz regressions: PyTorch checkpoints")
struct PyTorchFuzzRegressionTests {
  static let fuzzRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fuzz")

  static func inputs(_ kind: String) -> [URL] {
    let folder = fuzzRoot.appendingPathComponent(kind).appendingPathComponent("pth")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.sorted().map { folder.appendingPathComponent($0) }
  }

  @Test func seedsDecodeAndRoundTrip() throws {
    let seeds = Self.inputs("corpus")
    #expect(seeds.count >= 4)
    for url in seeds {
      let file = try PyTorchCheckpoint.decode([UInt8](try Data(contentsOf: url)), path: url.path)
      let encoded = PyTorchCheckpoint.encode(
        file.names.map { SafeTensors.Entry($0, file.tensors[$0]!) })
      let again = try PyTorchCheckpoint.decode(encoded, path: "re-encoded")
      for name in file.names {
        #expect(again.tensors[name]?.scalars == file.tensors[name]!.scalars, "\(name)")
      }
    }
  }

  @Test func regressionsAreRefusedWithTheirPath() throws {
    for url in Self.inputs("regressions") {
      do {
        _ = try PyTorchCheckpoint.decode([UInt8](try Data(contentsOf: url)), path: url.path)
        Issue.record("\(url.lastPathComponent) decoded")
      } catch {
        #expect("\(error)".contains(url.path), "\(url.lastPathComponent): \(error)")
      }
    }
  }
}
