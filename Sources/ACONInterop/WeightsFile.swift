import ACONTensor
import Foundation

/// Weights files of either format, chosen by the file name: safetensors (`.safetensors`) or a
/// PyTorch checkpoint (`.pth`, `.pth.tar`, `.pt`, `.tar`, `.ckpt`, `.bin`). A name with neither
/// ending is recognised by its first bytes.
public enum WeightsFile {
  /// The formats.
  public enum Format: Sendable {
    case safeTensors, pyTorch
  }

  /// The name endings of PyTorch checkpoints.
  public static let pyTorchExtensions = [".pth", ".pth.tar", ".pt", ".tar", ".ckpt", ".bin"]

  /// The format `path`'s name asks for, or nil when it says nothing.
  public static func format(ofName path: String) -> Format? {
    let lower = path.lowercased()
    if lower.hasSuffix(".safetensors") { return .safeTensors }
    if pyTorchExtensions.contains(where: { lower.hasSuffix($0) }) { return .pyTorch }
    return nil
  }

  /// Reads the weights at `path` (tensors as Float32, the element type each had, metadata).
  public static func read(_ path: String) throws -> SafeTensorsFile {
    let url = URL(fileURLWithPath: path)
    var format = format(ofName: path)
    if format == nil {
      let head = (try? FileHandle(forReadingFrom: url).read(upToCount: 4)).flatMap { $0 } ?? Data()
      let bytes = [UInt8](head)
      format = StoredZipArchive.looksLikeZip(bytes) || bytes.first == 0x80 ? .pyTorch : .safeTensors
    }
    switch format! {
    case .safeTensors: return try SafeTensors.read(url)
    case .pyTorch: return try PyTorchCheckpoint.read(url)
    }
  }

  /// Writes `file` to `path` in the format its name asks for (safetensors when it says nothing),
  /// keeping each tensor's element type where the format can hold it (F32, F64, I64, I32;
  /// half-precision types are written as F32).
  public static func write(_ file: SafeTensorsFile, to path: String) throws {
    let entries = file.names.map { name -> SafeTensors.Entry in
      let dtype = file.dtypes[name] ?? .f32
      return SafeTensors.Entry(name, file.tensors[name]!, dtype: dtype.isWritable ? dtype : .f32)
    }
    let url = URL(fileURLWithPath: path)
    switch format(ofName: path) ?? .safeTensors {
    case .safeTensors: try SafeTensors.write(entries, metadata: file.metadata, to: url)
    case .pyTorch: try PyTorchCheckpoint.write(entries, metadata: file.metadata, to: url)
    }
  }

  /// `file` with the `module.` prefix of `nn.DataParallel` removed, when every key has it.
  public static func strippingDataParallelPrefix(_ file: SafeTensorsFile) -> SafeTensorsFile {
    let prefix = "module."
    guard !file.names.isEmpty, file.names.allSatisfy({ $0.hasPrefix(prefix) }) else { return file }
    func strip(_ name: String) -> String { String(name.dropFirst(prefix.count)) }
    return SafeTensorsFile(
      tensors: Dictionary(uniqueKeysWithValues: file.tensors.map { (strip($0.key), $0.value) }),
      dtypes: Dictionary(uniqueKeysWithValues: file.dtypes.map { (strip($0.key), $0.value) }),
      names: file.names.map(strip), metadata: file.metadata)
  }
}
