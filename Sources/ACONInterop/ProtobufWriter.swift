/// Protocol-buffer encoding of the few message fields ONNX export writes: varints, 32-bit
/// floats, length-delimited bytes, strings and nested messages.
///
/// Why not swift-protobuf: export writes 9 ONNX messages and reads none; the wire format for
/// them is these five cases (about 60 lines here), whereas the generated onnx.pb.swift is
/// thousands of lines plus a runtime dependency and a generator plugin to keep in step. The
/// files are checked by `onnx.checker` and onnxruntime in the tests.
///
/// Source: the protocol buffers encoding guide (wire types 0, 2, 5; field key `number << 3 | type`).
struct ProtobufWriter {
  private(set) var bytes: [UInt8] = []

  private mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  private mutating func key(_ field: Int, _ wireType: UInt64) {
    varint(UInt64(field) << 3 | wireType)
  }

  /// An int32/int64/enum/bool field (negative numbers take ten bytes, as protobuf specifies).
  mutating func integer(_ field: Int, _ value: Int) {
    key(field, 0)
    varint(UInt64(bitPattern: Int64(value)))
  }

  /// A float field (wire type 5, little-endian).
  mutating func float(_ field: Int, _ value: Float) {
    key(field, 5)
    let bits = value.bitPattern
    for i in 0..<4 { bytes.append(UInt8((bits >> (8 * UInt32(i))) & 0xFF)) }
  }

  /// A bytes field.
  mutating func data(_ field: Int, _ value: [UInt8]) {
    key(field, 2)
    varint(UInt64(value.count))
    bytes += value
  }

  /// A string field.
  mutating func string(_ field: Int, _ value: String) { data(field, Array(value.utf8)) }

  /// An embedded message field.
  mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
    var inner = ProtobufWriter()
    build(&inner)
    data(field, inner.bytes)
  }
}
