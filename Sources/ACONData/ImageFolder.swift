import ACONTensor
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Images laid out as `root/<class>/<image>.{jpg,jpeg,png}` (the ImageNet layout), as
/// torchvision's `ImageFolder` reads them: class folders sorted by name give the label indices,
/// files are found recursively in sorted order. Images are decoded when a sample is read.
public struct ImageFolder: DataSet {
  /// The root folder.
  public let root: String
  /// Class names (folder names), sorted; a label is an index into this array.
  public let classes: [String]
  /// Every image file with its label, in the order torchvision lists them.
  public let files: [(path: String, label: Int)]

  /// File-name extensions accepted (compared case-insensitively).
  public static let extensions: Set<String> = ["jpg", "jpeg", "png"]

  public var count: Int { files.count }
  public var classCount: Int { classes.count }

  /// Scans `root`. Throws when the root is missing or has no class folder, or when a class
  /// folder holds no image (as torchvision does).
  public init(root: String) throws {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
      throw TensorError.invalidFile(path: root, detail: "image folder not found")
    }
    let entries = try fm.contentsOfDirectory(atPath: root)
    let classes = entries.filter { name in
      var d: ObjCBool = false
      return fm.fileExists(atPath: (root as NSString).appendingPathComponent(name), isDirectory: &d)
        && d.boolValue
    }.sorted(by: Self.codePointOrder)
    guard !classes.isEmpty else {
      throw TensorError.invalidFile(path: root, detail: "no class folders in the image folder")
    }
    var files: [(path: String, label: Int)] = []
    for (label, name) in classes.enumerated() {
      let dir = (root as NSString).appendingPathComponent(name)
      let found = try Self.images(in: dir)
      guard !found.isEmpty else {
        throw TensorError.invalidFile(
          path: dir, detail: "class folder holds no .jpg, .jpeg or .png file")
      }
      files += found.map { ($0, label) }
    }
    self.root = root
    self.classes = classes
    self.files = files
  }

  /// Python's string order (by code point), which torchvision's `sorted` uses.
  static func codePointOrder(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
  }

  /// Image files under `dir`, recursively, sorted at each level like `os.walk` + `sorted`.
  /// Symbolic links to folders are followed (as torchvision does), but each real folder is listed
  /// once: a link back up the tree would otherwise recurse without end.
  static func images(in dir: String) throws -> [String] {
    var visited = Set<String>()
    return try images(in: dir, visited: &visited)
  }

  private static func images(in dir: String, visited: inout Set<String>) throws -> [String] {
    // A folder is known by its device and inode, whatever chain of links led to it.
    var info = stat()
    guard stat(dir, &info) == 0 else {
      throw TensorError.invalidFile(path: dir, detail: String(cString: strerror(errno)))
    }
    guard visited.insert("\(info.st_dev):\(info.st_ino)").inserted else { return [] }
    let fm = FileManager.default
    var result: [String] = []
    var subdirs: [String] = []
    for name in try fm.contentsOfDirectory(atPath: dir).sorted(by: codePointOrder) {
      let path = (dir as NSString).appendingPathComponent(name)
      var d: ObjCBool = false
      _ = fm.fileExists(atPath: path, isDirectory: &d)
      if d.boolValue {
        subdirs.append(path)
      } else if extensions.contains((name as NSString).pathExtension.lowercased()) {
        result.append(path)
      }
    }
    for sub in subdirs { result += try images(in: sub, visited: &visited) }
    return result
  }

  public func sample(_ index: Int) throws -> (image: PixelImage, label: Int) {
    let entry = files[index]
    return (try ImageCodec.decode(file: entry.path), entry.label)
  }
}
