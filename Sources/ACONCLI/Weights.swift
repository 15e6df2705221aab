import ACONInterop
import ACONTensor

/// Reads a weights file of either format (safetensors, or a PyTorch checkpoint by its name:
/// `.pth`, `.pth.tar`, `.pt`) with `nn.DataParallel`'s `module.` prefix removed.
func readWeights(_ path: String) throws -> SafeTensorsFile {
  WeightsFile.strippingDataParallelPrefix(try WeightsFile.read(path))
}
