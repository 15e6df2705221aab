/// A value built by ``Unpickler``: the plain data a PyTorch checkpoint holds, and nothing that
/// could run code.
public indirect enum PickleValue {
  case none
  case bool(Bool)
  case int(Int)
  /// An integer beyond 64 bits (LONG1/LONG4), little-endian two's complement bytes.
  case bigInteger([UInt8])
  case float(Double)
  case string(String)
  case bytes([UInt8])
  case tuple(PickleTuple)
  case list(PickleList)
  case dictionary(PickleDictionary)
  /// One of the allow-listed globals, before it is called.
  case global(AllowedGlobal)
  /// A storage named by a persistent id: its data lives outside the pickle.
  case storage(PickledStorage)
  case tensor(PickledTensor)

  /// A short name of the value's kind, for error messages.
  var kind: String {
    switch self {
    case .none: return "None"
    case .bool: return "bool"
    case .int, .bigInteger: return "int"
    case .float: return "float"
    case .string: return "str"
    case .bytes: return "bytes"
    case .tuple: return "tuple"
    case .list: return "list"
    case .dictionary: return "dict"
    case .global(let g): return "global \(g)"
    case .storage: return "storage"
    case .tensor: return "tensor"
    }
  }
}

/// A tuple, with how deeply tuples nest inside it (bounded, so that freeing one never
/// recurses deeper than ``Unpickler/maximumTupleDepth``).
public struct PickleTuple {
  public let items: [PickleValue]
  let depth: Int

  init(_ items: [PickleValue]) {
    self.items = items
    depth =
      1
      + items.reduce(0) { deepest, item in
        if case .tuple(let t) = item { return max(deepest, t.depth) }
        return deepest
      }
  }
}

/// A list under construction (APPEND mutates the one the memo also holds).
public final class PickleList {
  public var items: [PickleValue] = []
}

/// A dictionary in insertion order (`dict` and `collections.OrderedDict` alike).
public final class PickleDictionary {
  public var entries: [(key: PickleValue, value: PickleValue)] = []

  /// The value under the string key `key`, if any.
  public subscript(key: String) -> PickleValue? {
    for entry in entries { if case .string(key) = entry.key { return entry.value } }
    return nil
  }
}

/// PyTorch's element types as its storage classes name them (`torch.FloatStorage`).
public enum StorageType: String, CaseIterable, Sendable {
  case float = "FloatStorage"
  case half = "HalfStorage"
  case bfloat16 = "BFloat16Storage"
  case double = "DoubleStorage"
  case long = "LongStorage"
  case int = "IntStorage"
  case short = "ShortStorage"
  case char = "CharStorage"
  case byte = "ByteStorage"
  case bool = "BoolStorage"

  /// Bytes per element.
  public var elementSize: Int {
    switch self {
    case .double, .long: return 8
    case .float, .int: return 4
    case .half, .bfloat16, .short: return 2
    case .char, .byte, .bool: return 1
    }
  }

  /// PyTorch's name of the element type.
  public var dtypeName: String {
    switch self {
    case .float: return "float32"
    case .half: return "float16"
    case .bfloat16: return "bfloat16"
    case .double: return "float64"
    case .long: return "int64"
    case .int: return "int32"
    case .short: return "int16"
    case .char: return "int8"
    case .byte: return "uint8"
    case .bool: return "bool"
    }
  }
}

/// The globals a checkpoint may name. Everything else is refused when the GLOBAL opcode names
/// it, before any argument is even read.
public enum AllowedGlobal: Equatable, CustomStringConvertible {
  case orderedDict
  case rebuildTensorV2
  case rebuildTensor
  case rebuildParameter
  case storageType(StorageType)

  init?(module: String, name: String) {
    switch (module, name) {
    case ("collections", "OrderedDict"): self = .orderedDict
    case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
    case ("torch._utils", "_rebuild_tensor"): self = .rebuildTensor
    case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
    case ("torch", let n):
      guard let type = StorageType(rawValue: n) else { return nil }
      self = .storageType(type)
    default: return nil
    }
  }

  public var description: String {
    switch self {
    case .orderedDict: return "collections.OrderedDict"
    case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
    case .rebuildTensor: return "torch._utils._rebuild_tensor"
    case .rebuildParameter: return "torch._utils._rebuild_parameter"
    case .storageType(let t): return "torch.\(t.rawValue)"
    }
  }

  /// Every allowed global's dotted name, for error messages.
  static let names =
    [
      "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_parameter",
    ] + StorageType.allCases.map { "torch.\($0.rawValue)" }
}

/// A storage a persistent id names: `('storage', torch.FloatStorage, key, location, numel)`.
public struct PickledStorage: Equatable {
  public let type: StorageType
  public let key: String
  public let elementCount: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
public struct PickledTensor: Equatable {
  public let storage: PickledStorage
  public let offset: Int
  public let shape: [Int]
  public let strides: [Int]
}

/// A pickle reader that builds values and never executes anything.
///
/// It understands the opcodes of protocols 2 to 5 that `torch.save` and `pickle.dump` emit for
/// dictionaries, lists, tuples, strings, numbers and tensors. A GLOBAL outside
/// ``AllowedGlobal`` (`os.system`, `builtins.eval`, ...) is an error naming it; so is any call
/// (REDUCE, NEWOBJ) of something that is not an allowed global, and any opcode it does not know.
/// The same idea as PyTorch's `weights_only=True` loader.
public struct Unpickler {
  private let reader: ByteReader
  private let path: String
  /// Where the next opcode is read.
  public private(set) var position: Int
  /// The element type of every storage the pickles read so far named, by key.
  public private(set) var storageTypes: [String: StorageType] = [:]
  /// Every list and dictionary built, so that ``releaseContainers()`` can empty them: a pickle
  /// may nest them arbitrarily deep or make them contain themselves (through the memo), and
  /// freeing such a structure the ordinary way would recurse without bound or leak.
  private var containers: [AnyObject] = []
  /// How deeply tuples may nest (checkpoints nest them 2 or 3 deep).
  public static let maximumTupleDepth = 1000

  /// Reads the pickle that starts at `position` in `bytes`.
  public init(_ bytes: [UInt8], path: String, position: Int = 0) {
    self.reader = ByteReader(bytes, path: path)
    self.path = path
    self.position = position
  }

  private func fail(_ detail: String, at p: Int) -> InteropError {
    InteropError(path, "pickle at byte \(p): \(detail)")
  }

  private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
    let s = try reader.slice(position, count)
    position += count
    return s
  }

  private mutating func byte() throws -> UInt8 { try take(1).first! }

  private mutating func u16() throws -> Int {
    let v = try reader.u16(at: position)
    position += 2
    return Int(v)
  }

  private mutating func u32() throws -> UInt32 {
    let v = try reader.u32(at: position)
    position += 4
    return v
  }

  private mutating func u64() throws -> UInt64 {
    let v = try reader.u64(at: position)
    position += 8
    return v
  }

  /// A length field, refused when it is beyond what is left of the file.
  private mutating func length(_ v: UInt64, at p: Int) throws -> Int {
    guard v <= UInt64(reader.bytes.count - position) else {
      throw fail("a length of \(v) runs past the end of the file (truncated or corrupt)", at: p)
    }
    return Int(v)
  }

  private mutating func line() throws -> String {
    var out: [UInt8] = []
    while true {
      let b = try byte()
      if b == 0x0A { break }
      out.append(b)
      guard out.count < 1024 else { throw fail("a GLOBAL name longer than 1 KiB", at: position) }
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Empties every list and dictionary the pickles built, one at a time, so that none is freed
  /// recursively. Values returned by ``load()`` lose their contents: call this last.
  public mutating func releaseContainers() {
    for container in containers {
      if let list = container as? PickleList { list.items.removeAll() }
      if let dictionary = container as? PickleDictionary { dictionary.entries.removeAll() }
    }
    containers.removeAll()
  }

  private mutating func newList() -> PickleList {
    let list = PickleList()
    containers.append(list)
    return list
  }

  private mutating func newDictionary() -> PickleDictionary {
    let dictionary = PickleDictionary()
    containers.append(dictionary)
    return dictionary
  }

  private func tuple(_ items: [PickleValue], at p: Int) throws -> PickleValue {
    let t = PickleTuple(items)
    guard t.depth <= Self.maximumTupleDepth else {
      throw fail("tuples nested more than \(Self.maximumTupleDepth) deep (not a checkpoint)", at: p)
    }
    return .tuple(t)
  }

  /// Reads one pickle (up to and including STOP) and returns the value it builds.
  public mutating func load() throws -> PickleValue {
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]

    func pop(_ p: Int) throws -> PickleValue {
      guard let v = stack.popLast() else { throw fail("the stack is empty", at: p) }
      return v
    }
    func popMark(_ p: Int) throws -> [PickleValue] {
      guard let m = marks.popLast(), m <= stack.count else {
        throw fail("no MARK to pop to", at: p)
      }
      let items = Array(stack[m...])
      stack.removeSubrange(m...)
      return items
    }
    func top(_ p: Int) throws -> PickleValue {
      guard let v = stack.last else { throw fail("the stack is empty", at: p) }
      return v
    }
    func setItems(_ items: [PickleValue], _ p: Int) throws {
      guard case .dictionary(let dict) = try top(p) else {
        throw fail("SETITEM(S) on a \(try top(p).kind), not a dict", at: p)
      }
      guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd item count", at: p) }
      for i in stride(from: 0, to: items.count, by: 2) {
        if let existing = dict.entries.firstIndex(where: { sameKey($0.key, items[i]) }) {
          dict.entries[existing].value = items[i + 1]
        } else {
          dict.entries.append((items[i], items[i + 1]))
        }
      }
    }
    func append(_ items: [PickleValue], _ p: Int) throws {
      guard case .list(let list) = try top(p) else {
        throw fail("APPEND(S) on a \(try top(p).kind), not a list", at: p)
      }
      list.items += items
    }

    while true {
      let p = position
      let op = try byte()
      switch op {
      case 0x80:  // PROTO
        let version = try byte()
        guard version <= 5 else { throw fail("pickle protocol \(version) is newer than 5", at: p) }
      case 0x95: _ = try u64()  // FRAME: a length hint only
      case 0x2E:  // STOP
        guard stack.count == 1 else {
          throw fail("STOP with \(stack.count) values on the stack", at: p)
        }
        return stack[0]
      case 0x28: marks.append(stack.count)  // MARK
      case 0x29: stack.append(.tuple(PickleTuple([])))  // EMPTY_TUPLE
      case 0x5D: stack.append(.list(newList()))  // EMPTY_LIST
      case 0x7D: stack.append(.dictionary(newDictionary()))  // EMPTY_DICT
      case 0x4E: stack.append(.none)  // NONE
      case 0x88: stack.append(.bool(true))  // NEWTRUE
      case 0x89: stack.append(.bool(false))  // NEWFALSE
      case 0x4A: stack.append(.int(Int(Int32(bitPattern: try u32()))))  // BININT
      case 0x4B: stack.append(.int(Int(try byte())))  // BININT1
      case 0x4D: stack.append(.int(try u16()))  // BININT2
      case 0x8A, 0x8B:  // LONG1, LONG4
        let n = op == 0x8A ? Int(try byte()) : try length(UInt64(try u32()), at: p)
        let digits = Array(try take(n))
        if digits.count <= 8 {
          var v: UInt64 = 0
          for (i, d) in digits.enumerated() { v |= UInt64(d) << (8 * UInt64(i)) }
          // Sign-extend from the top byte.
          if let last = digits.last, last & 0x80 != 0, digits.count < 8 {
            v |= UInt64.max << (8 * UInt64(digits.count))
          }
          stack.append(.int(Int(Int64(bitPattern: v))))
        } else {
          stack.append(.bigInteger(digits))
        }
      case 0x47:  // BINFLOAT, big-endian
        var v: UInt64 = 0
        for b in try take(8) { v = v << 8 | UInt64(b) }
        stack.append(.float(Double(bitPattern: v)))
      case 0x58, 0x8C, 0x8D:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
        let raw: UInt64 =
          op == 0x58 ? UInt64(try u32()) : op == 0x8C ? UInt64(try byte()) : try u64()
        let n = try length(raw, at: p)
        stack.append(.string(String(decoding: try take(n), as: UTF8.self)))
      case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str): bytes as Latin-1
        let n = try length(op == 0x54 ? UInt64(try u32()) : UInt64(try byte()), at: p)
        stack.append(.string(String(try take(n).map { Character(Unicode.Scalar($0)) })))
      case 0x42, 0x43, 0x8E:  // BINBYTES, SHORT_BINBYTES, BINBYTES8
        let raw: UInt64 =
          op == 0x42 ? UInt64(try u32()) : op == 0x43 ? UInt64(try byte()) : try u64()
        stack.append(.bytes(Array(try take(try length(raw, at: p)))))
      case 0x74: stack.append(try tuple(try popMark(p), at: p))  // TUPLE
      case 0x85: stack.append(try tuple([try pop(p)], at: p))  // TUPLE1
      case 0x86:  // TUPLE2
        let b = try pop(p)
        let a = try pop(p)
        stack.append(try tuple([a, b], at: p))
      case 0x87:  // TUPLE3
        let c = try pop(p)
        let b = try pop(p)
        let a = try pop(p)
        stack.append(try tuple([a, b, c], at: p))
      case 0x6C:  // LIST
        let list = newList()
        list.items = try popMark(p)
        stack.append(.list(list))
      case 0x64:  // DICT
        let items = try popMark(p)
        stack.append(.dictionary(newDictionary()))
        try setItems(items, p)
      case 0x71: memo[Int(try byte())] = try top(p)  // BINPUT
      case 0x72: memo[Int(try u32())] = try top(p)  // LONG_BINPUT
      case 0x94: memo[memo.count] = try top(p)  // MEMOIZE
      case 0x68, 0x6A:  // BINGET, LONG_BINGET
        let index = op == 0x68 ? Int(try byte()) : Int(try u32())
        guard let v = memo[index] else { throw fail("memo entry \(index) is not set", at: p) }
        stack.append(v)
      case 0x63:  // GLOBAL
        let module = try line()
        let name = try line()
        stack.append(.global(try allowed(module: module, name: name, at: p)))
      case 0x93:  // STACK_GLOBAL
        guard case .string(let name) = try pop(p), case .string(let module) = try pop(p) else {
          throw fail("STACK_GLOBAL without two strings", at: p)
        }
        stack.append(.global(try allowed(module: module, name: name, at: p)))
      case 0x52, 0x81:  // REDUCE, NEWOBJ
        let arguments = try pop(p)
        let callable = try pop(p)
        guard case .tuple(let args) = arguments else {
          throw fail("a call whose arguments are a \(arguments.kind), not a tuple", at: p)
        }
        guard case .global(let global) = callable else {
          throw fail("a call of a \(callable.kind): only allowed globals may be called", at: p)
        }
        stack.append(try call(global, args.items, at: p))
      case 0x62:  // BUILD: object state; the only objects that get one are dicts (_metadata)
        let state = try pop(p)
        switch try top(p) {
        case .dictionary, .tensor: _ = state
        case let other: throw fail("BUILD on a \(other.kind)", at: p)
        }
      case 0x73:  // SETITEM
        let value = try pop(p)
        let key = try pop(p)
        try setItems([key, value], p)
      case 0x75: try setItems(try popMark(p), p)  // SETITEMS
      case 0x61: try append([try pop(p)], p)  // APPEND
      case 0x65: try append(try popMark(p), p)  // APPENDS
      case 0x51:  // BINPERSID
        let storage = try persistentLoad(try pop(p), at: p)
        storageTypes[storage.key] = storage.type
        stack.append(.storage(storage))
      case 0x30: _ = try pop(p)  // POP
      case 0x31: _ = try popMark(p)  // POP_MARK
      case 0x32: stack.append(try top(p))  // DUP
      default:
        throw fail(
          "unknown or unsupported opcode 0x\(String(op, radix: 16)) (not a PyTorch checkpoint, or corrupt)",
          at: p)
      }
    }
  }

  private func allowed(module: String, name: String, at p: Int) throws -> AllowedGlobal {
    guard let global = AllowedGlobal(module: module, name: name) else {
      throw fail(
        "refusing the global \(module).\(name): a checkpoint may name only tensors, storages and "
          + "dictionaries (\(AllowedGlobal.names.joined(separator: ", "))); nothing was executed",
        at: p)
    }
    return global
  }

  private mutating func call(_ global: AllowedGlobal, _ args: [PickleValue], at p: Int) throws
    -> PickleValue
  {
    func integers(_ v: PickleValue, _ what: String) throws -> [Int] {
      guard case .tuple(let t) = v else {
        throw fail("\(global): \(what) is a \(v.kind), not a tuple", at: p)
      }
      return try t.items.map {
        guard case .int(let i) = $0, i >= 0 else {
          throw fail("\(global): \(what) holds a \($0.kind)", at: p)
        }
        return i
      }
    }
    switch global {
    case .orderedDict:
      guard args.isEmpty else { throw fail("OrderedDict called with arguments", at: p) }
      return .dictionary(newDictionary())
    case .rebuildTensorV2, .rebuildTensor:
      guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1],
        offset >= 0
      else {
        throw fail("\(global) needs (storage, offset, size, stride, ...)", at: p)
      }
      let shape = try integers(args[2], "size")
      let strides = try integers(args[3], "stride")
      guard shape.count == strides.count else {
        throw fail("\(global): size \(shape) and stride \(strides) differ in rank", at: p)
      }
      return .tensor(
        PickledTensor(storage: storage, offset: offset, shape: shape, strides: strides))
    case .rebuildParameter:
      guard let first = args.first, case .tensor = first else {
        throw fail("_rebuild_parameter needs a tensor", at: p)
      }
      return first
    case .storageType(let t):
      throw fail("torch.\(t.rawValue) may name a storage's type but not be called", at: p)
    }
  }

  private func persistentLoad(_ id: PickleValue, at p: Int) throws -> PickledStorage {
    guard case .tuple(let t) = id, case let parts = t.items, parts.count >= 5,
      case .string("storage") = parts[0],
      case .global(.storageType(let type)) = parts[1], case .string(let key) = parts[2],
      case .int(let count) = parts[4], count >= 0
    else {
      throw fail(
        "a persistent id that is not ('storage', torch.<Type>Storage, key, location, numel)", at: p)
    }
    return PickledStorage(type: type, key: key, elementCount: count)
  }
}

/// Whether two dictionary keys are the same (strings and integers; anything else never is).
func sameKey(_ a: PickleValue, _ b: PickleValue) -> Bool {
  switch (a, b) {
  case (.string(let x), .string(let y)): return x == y
  case (.int(let x), .int(let y)): return x == y
  default: return false
  }
}
