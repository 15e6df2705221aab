// Fuzz target: the PyTorch checkpoint reader (PyTorchCheckpoint.decode: zip archive, legacy
// pickle stream, the allow-list unpickler), with a round-trip property: whatever decodes is
// written by PyTorchCheckpoint.encode and decodes to the same names, shapes and values.

import ACONInterop
import ACONTensor
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  guard let file = try? PyTorchCheckpoint.decode(bytes, path: "fuzz") else { return }
  let entries = file.names.map { SafeTensors.Entry($0, file.tensors[$0]!) }
  let encoded = PyTorchCheckpoint.encode(entries, metadata: file.metadata)
  guard let again = try? PyTorchCheckpoint.decode(encoded, path: "re-encoded") else {
    require(false, "a decoded checkpoint did not decode after re-encoding")
    return
  }
  require(Set(again.names) == Set(file.names), "names changed in the round trip")
  for name in file.names {
    let a = file.tensors[name]!
    let b = again.tensors[name]!
    require(a.shape == b.shape, "shape of \(name) changed")
    require(
      zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
      "values of \(name) changed")
  }
}

func seedInputs() throws -> [(String, [UInt8])] {
  let entries = [
    SafeTensors.Entry("conv.weight", Tensor(shape: [2, 1, 1, 1], values: [0.5, -1])),
    SafeTensors.Entry("bn.num_batches_tracked", Tensor(scalar: 3), dtype: .i64),
    SafeTensors.Entry("fc.bias", Tensor(shape: [3], values: [1, 2, 3])),
  ]
  var seeds: [(String, [UInt8])] = [
    ("written.pth", PyTorchCheckpoint.encode(entries, metadata: ["epoch": "3"]))
  ]
  // The reader's own test fixtures, made by PyTorch (zip and legacy formats, DataParallel keys).
  let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../Tests/ACONInteropTests/Fixtures").standardizedFileURL
  for name in ["small_zip.pth", "small_legacy.pth", "dataparallel.pth"] {
    seeds.append((name, [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))))
  }
  return seeds
}
