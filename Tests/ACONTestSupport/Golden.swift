import ACONTensor
import Foundation

/// A golden file: reference tensors produced by a PyTorch script under scripts/, stored as
/// safetensors, with helpers that compare our results against them and say what differs.
///
/// Float64 references are read rounded to Float32; that rounding (relative 6e-8) is far below
/// the Float32 error being measured.
public struct Golden {
  /// Where the file came from, for messages.
  public let url: URL
  /// The decoded file.
  public let file: SafeTensorsFile

  /// Loads the golden file at `url`.
  public init(url: URL) throws {
    self.url = url
    self.file = try SafeTensors.read(url)
  }

  /// Loads `Golden/<name>.safetensors` from a test target's resources (pass `Bundle.module`).
  public init(named name: String, in bundle: Bundle) throws {
    guard
      let url = bundle.url(forResource: name, withExtension: "safetensors", subdirectory: "Golden")
    else {
      throw TensorError.invalidFile(
        path: "Golden/\(name).safetensors",
        detail: "not found in the test bundle \(bundle.bundlePath)")
    }
    try self.init(url: url)
  }

  /// The file's metadata (generating script, torch version, seed).
  public var metadata: [String: String] { file.metadata }

  /// The tensor called `name`; the error names the file and the tensor.
  public func tensor(_ name: String) throws -> Tensor {
    try file.tensor(name, path: url.lastPathComponent)
  }

  /// An integer tensor (labels) as `Int`s.
  public func integers(_ name: String) throws -> [Int] {
    try tensor(name).scalars.map { Int($0) }
  }

  /// Whether the file holds a tensor called `name`.
  public func contains(_ name: String) -> Bool { file.tensors[name] != nil }

  /// Compares `actual` with the golden tensor `name`; nil when it passes, else a message that
  /// names the tensor and gives both errors. See ``TensorComparison``.
  ///
  /// With `leadingRows`, a golden tensor that holds only the first rows (dimension 0) of a
  /// large tensor, as the model parity goldens store big gradients, is compared with the same
  /// rows of `actual`.
  public func mismatch(
    _ actual: Tensor, _ name: String, relativeL2: Double = 1e-5, maxAbs: Double = .infinity,
    leadingRows: Bool = false
  ) -> String? {
    do {
      let expected = try tensor(name)
      var a = actual
      if leadingRows, actual.rank >= 1, expected.rank == actual.rank,
        expected.shape.dropFirst() == actual.shape.dropFirst(), expected.shape[0] < actual.shape[0]
      {
        a = try actual.detached.narrowBatch(start: 0, count: expected.shape[0])
      }
      return TensorComparison(a, expected, name: name)
        .failure(relativeL2: relativeL2, maxAbs: maxAbs)
    } catch {
      return "\(error)"
    }
  }
}

/// How far a tensor is from a reference: relative L2 error `||a - r|| / ||r||` (the parity
/// measure) and the largest absolute difference, computed in Float64.
public struct TensorComparison: CustomStringConvertible {
  public let name: String
  public let shapesAgree: Bool
  public let actualShape: [Int]
  public let expectedShape: [Int]
  /// `||a - r|| / ||r||`, or `||a - r||` when the reference is zero.
  public let relativeL2: Double
  /// `max |a - r|`.
  public let maxAbs: Double
  /// Where the largest difference is (flat index).
  public let worstIndex: Int
  /// Number of elements of `actual` that are NaN or infinite where the reference is finite.
  public let nonFinite: Int

  public init(_ actual: Tensor, _ expected: Tensor, name: String) {
    self.name = name
    actualShape = actual.shape
    expectedShape = expected.shape
    shapesAgree = actual.shape == expected.shape
    var num = 0.0
    var den = 0.0
    var worst = 0.0
    var worstAt = 0
    var bad = 0
    if shapesAgree {
      for i in 0..<actual.count {
        let a = Double(actual.data[i])
        let r = Double(expected.data[i])
        if !a.isFinite && r.isFinite {
          bad += 1
          continue
        }
        let d = abs(a - r)
        num += d * d
        den += r * r
        if d > worst {
          worst = d
          worstAt = i
        }
      }
    }
    relativeL2 = den == 0 ? num.squareRoot() : (num / den).squareRoot()
    maxAbs = worst
    worstIndex = worstAt
    nonFinite = bad
  }

  /// Nil when shapes agree, every value is finite and both errors are within bounds.
  public func failure(relativeL2 limit: Double, maxAbs absLimit: Double = .infinity) -> String? {
    if !shapesAgree {
      return "\(name): shape \(describe(actualShape)), expected \(describe(expectedShape))"
    }
    if nonFinite > 0 { return "\(name): \(nonFinite) non-finite values" }
    if relativeL2 <= limit && maxAbs <= absLimit { return nil }
    return "\(name): \(self) exceeds relative L2 \(limit)"
      + (absLimit.isFinite ? " / max abs \(absLimit)" : "")
  }

  public var description: String {
    String(
      format: "relative L2 %.3e, max abs %.3e (at element %d)", relativeL2, maxAbs, worstIndex)
  }
}
