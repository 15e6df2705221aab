// Fuzz target: the safetensors reader (SafeTensors.decode), with a round-trip property: whatever
// decodes re-encodes as F32 and decodes to the same shapes and values.

import ACONTensor
import Foundation

func fuzzOne(_ bytes: [UInt8]) {
  guard let file = try? SafeTensors.decode(Data(bytes), path: "fuzz") else { return }
  let entries = file.names.map { SafeTensors.Entry($0, file.tensors[$0]!) }
  guard let encoded = try? SafeTensors.encode(entries, metadata: file.metadata) else { return }
  guard let again = try? SafeTensors.decode(encoded) else {
    require(false, "a decoded file did not decode after re-encoding")
    return
  }
  require(again.names == file.names, "names changed in the round trip")
  require(again.metadata == file.metadata, "metadata changed in the round trip")
  for name in file.names {
    let a = file.tensors[name]!
    let b = again.tensors[name]!
    require(a.shape == b.shape, "shape of \(name) changed")
    require(
      zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
      "values of \(name) changed")
  }
}

/// A header with one tensor per declared element type, hand-written so that types the writer
/// does not produce (F16, BF16, F8, U8, BOOL, ...) are in the corpus too.
func handWritten(_ tensors: [(name: String, dtype: String, shape: [Int], bytes: [UInt8])]) -> [UInt8] {
  var cursor = 0
  var fields: [String] = ["\"__metadata__\":{\"format\":\"pt\"}"]
  for t in tensors {
    let shape = t.shape.map(String.init).joined(separator: ",")
    fields.append(
      "\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(cursor),\(cursor + t.bytes.count)]}")
    cursor += t.bytes.count
  }
  var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
  while header.count % 8 != 0 { header.append(0x20) }
  var out: [UInt8] = []
  var n = UInt64(header.count)
  for _ in 0..<8 {
    out.append(UInt8(n & 0xFF))
    n >>= 8
  }
  return out + header + tensors.flatMap(\.bytes)
}

func seedInputs() throws -> [(String, [UInt8])] {
  let small = Tensor(shape: [2, 3], values: [1, -2, 0.5, 3, 4.25, -0.125])
  let scalar = Tensor(scalar: 7)
  let empty = Tensor(shape: [0, 4], values: [])
  let f32 = try SafeTensors.encode(
    [SafeTensors.Entry("weight", small), SafeTensors.Entry("bias", scalar), SafeTensors.Entry("none", empty)],
    metadata: ["format": "pt", "acon.model": "resnet18"])
  let mixed = try SafeTensors.encode([
    SafeTensors.Entry("a", small, dtype: .f64), SafeTensors.Entry("b", small, dtype: .i64),
    SafeTensors.Entry("c", small, dtype: .i32),
  ])
  let narrow = handWritten([
    ("h", "F16", [2], [0x00, 0x3C, 0x00, 0xC0]), ("bf", "BF16", [2], [0x80, 0x3F, 0x00, 0x40]),
    ("u8", "U8", [3], [0, 128, 255]), ("flag", "BOOL", [2], [0, 1]),
    ("e5", "F8_E5M2", [2], [0x3C, 0xFC]), ("e4", "F8_E4M3", [2], [0x38, 0x7F]),
    ("s", "I16", [1], [0xFF, 0xFF]), ("u", "U64", [1], [1, 0, 0, 0, 0, 0, 0, 0]),
  ])
  let headerOnly = try SafeTensors.encode([], metadata: ["note": "no tensors"])
  return [
    ("f32.safetensors", [UInt8](f32)), ("wide-types.safetensors", [UInt8](mixed)),
    ("narrow-types.safetensors", narrow), ("header-only.safetensors", [UInt8](headerOnly)),
  ]
}
