// Fuzz target: the ONNX writer (ONNXExporter.export and ONNXModel.serialized) over small zoo
// models with every activation, odd sizes, opsets in and out of range, and weights overwritten
// with arbitrary float bit patterns (NaN, infinities, subnormals) from the input. Whatever
// exports must serialize to well-formed protobuf: every field's tag, length and nesting (model,
// graph, nodes, initializers) inside its parent.

import ACONInterop
import ACONModels
import ACONNN
import ACONTensor
import Foundation

let models = ["mobilenetv1-0.25", "shufflenetv2-0.25x", "mobilenetv2-0.17", "tfnet-0.5"]
let activations = ActivationKind.allCases.map(\.rawValue)

func fuzzOne(_ bytes: [UInt8]) {
  guard bytes.count >= 6 else { return }
  let configuration = ModelConfiguration(
    model: models[Int(bytes[0]) % models.count], activation: activations[Int(bytes[1]) % activations.count],
    classes: 1 + Int(bytes[2]) % 16, inputChannels: 1 + Int(bytes[3] >> 6), smallInput: bytes[5] & 1 != 0)
  let inputSize = 1 + Int(bytes[3] & 0x3F)
  let options = ONNXExporter.Options(
    inputSize: inputSize, batchSize: 1 + Int(bytes[5] >> 4), dynamicBatch: bytes[5] & 2 != 0,
    opset: 11 + Int(bytes[4]) % 12)
  guard let model = try? ModelZoo.make(configuration) else { return }
  // The rest of the input overwrites the first parameters' values, four bytes a float.
  var floats = stride(from: 6, to: bytes.count - 3, by: 4).map { i in
    Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
  }[...]
  var state: [String: Tensor] = [:]
  for (name, tensor) in model.stateDict() {
    guard !floats.isEmpty else { break }
    var values = tensor.scalars
    let n = min(values.count, floats.count)
    values.replaceSubrange(0..<n, with: floats.prefix(n))
    floats = floats.dropFirst(n)
    state[name] = Tensor(shape: tensor.shape, values: values)
  }
  guard (try? model.loadStateDict(state, strict: false)) != nil else { return }
  guard let onnx = try? ONNXExporter.export(model, configuration: configuration, options: options) else { return }
  let serialized = onnx.serialized()
  // ModelProto: graph = 7; GraphProto: node = 1, initializer = 5, input = 11, output = 12.
  guard let modelFields = Protobuf.fields(serialized[...]) else { return require(false, "model is not protobuf") }
  let graphs = modelFields.filter { $0.number == 7 }
  require(graphs.count == 1, "\(graphs.count) graphs")
  guard let graphFields = Protobuf.fields(graphs[0].payload) else { return require(false, "graph is not protobuf") }
  for field in graphFields where [1, 5, 11, 12].contains(field.number) {
    require(field.wireType == 2 && Protobuf.fields(field.payload) != nil, "graph field \(field.number) is not a message")
  }
  require(graphFields.contains { $0.number == 1 }, "a graph without nodes")
}

/// Just enough of protobuf's wire format to check that a message's fields are well formed.
enum Protobuf {
  struct Field {
    var number: UInt64
    var wireType: UInt64
    var payload: ArraySlice<UInt8>
  }

  static func varint(_ bytes: ArraySlice<UInt8>, _ i: inout Int) -> UInt64? {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while i < bytes.endIndex, shift < 64 {
      let b = bytes[i]
      i += 1
      value |= UInt64(b & 0x7F) << shift
      if b & 0x80 == 0 { return value }
      shift += 7
    }
    return nil
  }

  /// The fields of one message, or nil when a tag, length or fixed-width value runs past its end.
  static func fields(_ bytes: ArraySlice<UInt8>) -> [Field]? {
    var result: [Field] = []
    var i = bytes.startIndex
    while i < bytes.endIndex {
      guard let key = varint(bytes, &i), key >> 3 != 0 else { return nil }
      let start = i
      switch key & 7 {
      case 0: guard varint(bytes, &i) != nil else { return nil }
      case 1: i += 8
      case 5: i += 4
      case 2:
        guard let length = varint(bytes, &i), length <= UInt64(bytes.endIndex - i) else { return nil }
        i += Int(length)
        result.append(Field(number: key >> 3, wireType: 2, payload: bytes[(i - Int(length))..<i]))
        continue
      default: return nil
      }
      guard i <= bytes.endIndex else { return nil }
      result.append(Field(number: key >> 3, wireType: key & 7, payload: bytes[start..<i]))
    }
    return result
  }
}

func seedInputs() throws -> [(String, [UInt8])] {
  [
    ("mobilenet-acon-c.bin", [0, 4, 9, 27, 6, 0]),
    ("shufflenet-meta-acon.bin", [1, 5, 9, 31, 6, 3] + [0, 0, 0xC0, 0x7F, 0, 0, 0x80, 0x7F, 1, 0, 0, 0]),
    ("tfnet-frelu-dynamic.bin", [3, 11, 2, 15, 4, 2]),
  ]
}
