import ACONInterop
import ACONTensor
import ArgumentParser
import Foundation

/// `acon convert`: weights between PyTorch checkpoints and safetensors, without Python.
struct Convert: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Convert weights between a PyTorch checkpoint (.pth, .pth.tar, .pt) and safetensors.",
    discussion: """
      The format of each file follows its name (.safetensors, or .pth/.pth.tar/.pt). PyTorch \
      checkpoints of both torch.save formats are read (the zip archive of PyTorch 1.6 and later, \
      and the legacy pickle stream), plain state dicts and {'state_dict': ...} wrappers; only \
      tensors, storages and dictionaries are unpickled, never code. float16, bfloat16 and float64 \
      tensors become float32. A written .pth is a zip archive that torch.load(weights_only=True) \
      reads; metadata (the acon.* model description) rides along in a {'state_dict': ...} wrapper.
      """)

  @Argument(help: "The weights to read.") var input: String
  @Argument(help: "The file to write.") var output: String
  @Flag(help: "Keep the `module.` prefix of nn.DataParallel keys (removed by default).")
  var keepPrefix = false

  func run() throws {
    var file = try WeightsFile.read(input)
    if !keepPrefix { file = WeightsFile.strippingDataParallelPrefix(file) }
    let converted = file.names.filter { file.dtypes[$0].map { !$0.isWritable } ?? false }
    try WeightsFile.write(file, to: output)
    let note =
      converted.isEmpty ? "" : " (\(converted.count) half-precision tensors widened to float32)"
    print("wrote \(file.names.count) tensors to \(output)\(note)")
  }
}
