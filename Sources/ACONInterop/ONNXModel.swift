/// The parts of an ONNX model (onnx/onnx.proto, proto2) that export writes, with their field
/// numbers. Repeated scalars are written unpacked, as proto2 declares them.
public struct ONNXModel {
  /// The IR version written: 8, which onnxruntime has accepted since 1.14.
  public static let irVersion = 8
  /// The default operator set (default domain).
  public static let defaultOpset = 17
  /// The operator sets export can target: every op it emits exists with the same semantics
  /// throughout (ReduceMean takes its axes as an input from 18 on; export follows that).
  public static let supportedOpsets = 13...21

  public var opset: Int
  public var graph: ONNXGraph
  public var producerVersion = "1.0"
  public var metadata: [(String, String)] = []

  /// The serialized `ModelProto`.
  public func serialized() -> [UInt8] {
    var w = ProtobufWriter()
    w.integer(1, Self.irVersion)  // ir_version
    w.string(2, "acon")  // producer_name
    w.string(3, producerVersion)  // producer_version
    w.message(7) { graph.write(to: &$0) }  // graph
    w.message(8) {  // opset_import
      $0.string(1, "")
      $0.integer(2, opset)
    }
    for (key, value) in metadata {
      w.message(14) {  // metadata_props
        $0.string(1, key)
        $0.string(2, value)
      }
    }
    return w.bytes
  }
}

/// A `GraphProto`: nodes in topological order, float initializers, typed inputs and outputs.
public struct ONNXGraph {
  public var name: String
  public var nodes: [ONNXNode] = []
  public var initializers: [ONNXTensor] = []
  public var inputs: [ONNXValueInfo] = []
  public var outputs: [ONNXValueInfo] = []

  func write(to w: inout ProtobufWriter) {
    for node in nodes { w.message(1) { node.write(to: &$0) } }
    w.string(2, name)
    for tensor in initializers { w.message(5) { tensor.write(to: &$0) } }
    for input in inputs { w.message(11) { input.write(to: &$0) } }
    for output in outputs { w.message(12) { output.write(to: &$0) } }
  }
}

/// A `NodeProto`.
public struct ONNXNode {
  public var opType: String
  public var name: String
  public var inputs: [String]
  public var outputs: [String]
  public var attributes: [ONNXAttribute] = []

  func write(to w: inout ProtobufWriter) {
    for input in inputs { w.string(1, input) }
    for output in outputs { w.string(2, output) }
    w.string(3, name)
    w.string(4, opType)
    for attribute in attributes { w.message(5) { attribute.write(to: &$0) } }
  }
}

/// An `AttributeProto` of the kinds export needs.
public struct ONNXAttribute {
  public enum Value {
    case int(Int)
    case float(Float)
    case ints([Int])
  }

  public var name: String
  public var value: Value

  public init(_ name: String, _ value: Value) {
    self.name = name
    self.value = value
  }

  func write(to w: inout ProtobufWriter) {
    w.string(1, name)
    switch value {
    case .float(let f):
      w.float(2, f)
      w.integer(20, 1)  // type FLOAT
    case .int(let i):
      w.integer(3, i)
      w.integer(20, 2)  // type INT
    case .ints(let values):
      for v in values { w.integer(8, v) }
      w.integer(20, 7)  // type INTS
    }
  }
}

/// A `TensorProto`: float32 values as little-endian `raw_data`, or int64 values.
public struct ONNXTensor {
  public enum Values {
    case float([Float])
    case int64([Int])
  }

  public var name: String
  public var shape: [Int]
  public var values: Values

  func write(to w: inout ProtobufWriter) {
    for d in shape { w.integer(1, d) }  // dims
    switch values {
    case .float(let floats):
      w.integer(2, 1)  // data_type FLOAT
      w.string(8, name)
      var raw: [UInt8] = []
      raw.reserveCapacity(floats.count * 4)
      for f in floats {
        let bits = f.bitPattern
        raw += [
          UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24),
        ]
      }
      w.data(9, raw)  // raw_data
    case .int64(let ints):
      w.integer(2, 7)  // data_type INT64
      for i in ints { w.integer(7, i) }  // int64_data
      w.string(8, name)
    }
  }
}

/// A `ValueInfoProto` for a float tensor; a nil dimension is symbolic (`dimParameter`).
public struct ONNXValueInfo {
  public var name: String
  public var shape: [Int?]
  public var dimParameter = "batch"

  func write(to w: inout ProtobufWriter) {
    w.string(1, name)
    w.message(2) {  // type
      $0.message(1) {  // tensor_type
        $0.integer(1, 1)  // elem_type FLOAT
        $0.message(2) {  // shape
          for d in shape {
            $0.message(1) {  // dim
              if let d { $0.integer(1, d) } else { $0.string(2, dimParameter) }
            }
          }
        }
      }
    }
  }
}
