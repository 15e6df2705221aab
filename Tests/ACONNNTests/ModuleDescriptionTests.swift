import ACONNN
import ACONTensor
import Testing

/// `print(module)` shows the tree as PyTorch's `repr` does: names, types, settings, shapes.
@Suite("Module description")
struct ModuleDescriptionTests {
  @Test func treeWithNamesTypesSettingsAndShapes() {
    var rng = RandomGenerator(seed: 0)
    let block = Sequential([
      Conv2d(
        inputChannels: 3, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, bias: false,
        using: &rng),
      BatchNorm2d(8),
      AconC(channels: 8, using: &rng),
      MaxPool2d(kernelSize: 3, stride: 2, padding: 1),
      Sequential([Flatten(), Linear(inputFeatures: 8, outputFeatures: 4, using: &rng)]),
    ])
    let expected = """
      Sequential(
        (0): Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False; weight [8, 3, 3, 3])
        (1): BatchNorm2d(8, eps=1e-05, momentum=0.1; weight [8], bias [8])
        (2): AconC(p1 [1, 8, 1, 1], p2 [1, 8, 1, 1], beta [1, 8, 1, 1])
        (3): MaxPool2d(kernel_size=3, stride=2, padding=1)
        (4): Sequential(
          (0): Flatten()
          (1): Linear(in_features=8, out_features=4; weight [4, 8], bias [4])
        )
      ), 292 parameters
      """
    #expect(block.description == expected)
    #expect(String(describing: block) == expected)
    #expect(block.parameterCount == 292)
  }

  @Test func metaACONShowsItsGenerator() {
    var rng = RandomGenerator(seed: 0)
    let meta = MetaAconC(channels: 32, reduction: 8, using: &rng)
    let lines = meta.description.split(separator: "\n")
    #expect(
      lines.first == "MetaAconC(32, generator=channel, hidden=8; p1 [1, 32, 1, 1], p2 [1, 32, 1, 1]"
    )
    #expect(lines.contains("  (fc1): Conv2d(32, 8, kernel_size=1; weight [8, 32, 1, 1], bias [8])"))
    #expect(
      lines.contains("  (bn2): BatchNorm2d(32, eps=1e-05, momentum=0.1; weight [32], bias [32])"))
  }
}
