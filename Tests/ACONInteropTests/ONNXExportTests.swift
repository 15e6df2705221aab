import ACONInterop
import ACONModels
import ACONNN
import ACONTensor
import ACONTestSupport
import Foundation
import Testing

/// ONNX export checked by onnx.checker (full check) and onnxruntime, in the venv that
/// scripts/onnx/setup_venv.sh makes (scripts/setup.sh, and so scripts/test.sh, runs it).
@Suite("ONNX export", .serialized)
struct ONNXExportTests {
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent()
    .deletingLastPathComponent()

  /// One exported network: the zoo model, its input layout, and the export's operator set.
  struct Case {
    var model: String
    var activation: String
    var inputChannels = 3
    var inputSize = 32
    var smallInput = false
    var opset = ONNXModel.defaultOpset
    var dynamicBatch = true

    var name: String {
      "\(model)_\(activation)_s\(inputSize)\(smallInput ? "small" : "")_op\(opset)\(dynamicBatch ? "_dyn" : "")"
    }
    var configuration: ModelConfiguration {
      ModelConfiguration(
        model: model, activation: activation, classes: 10, inputChannels: inputChannels,
        smallInput: smallInput)
    }
  }

  /// Every model family with every activation family it takes (TFNet is ACON-FReLU's network:
  /// it takes acon-frelu and its relu baseline), at small inputs to keep the suite fast, plus
  /// the bottleneck ResNet, opsets 13 and 18 and a fixed batch.
  static var cases: [Case] {
    var all: [Case] = []
    let activations = ActivationKind.allCases.map(\.rawValue).filter { $0 != "acon-frelu" }
    for activation in activations {
      all.append(Case(model: "shufflenetv2-0.25x", activation: activation))
      all.append(
        Case(
          model: "resnet18", activation: activation, inputChannels: 1, inputSize: 16,
          smallInput: true))
      all.append(Case(model: "mobilenetv1-0.25", activation: activation))
      all.append(
        Case(
          model: "mobilenetv2-0.17", activation: activation, inputChannels: 1, inputSize: 16,
          smallInput: true))
    }
    for activation in ["acon-frelu", "relu"] {
      all.append(Case(model: "tfnet-0.5", activation: activation))
      all.append(
        Case(
          model: "tfnet-0.5", activation: activation, inputChannels: 1, inputSize: 16,
          smallInput: true))
    }
    all.append(Case(model: "resnet50", activation: "meta-acon", inputSize: 16, smallInput: true))
    all.append(
      Case(
        model: "shufflenetv2-0.5x", activation: "meta-acon-layer", inputSize: 24, opset: 18,
        dynamicBatch: false))
    all.append(
      Case(
        model: "shufflenetv2-0.5x", activation: "acon-c-hard", inputSize: 24, opset: 13,
        dynamicBatch: false))
    return all
  }

  /// Gives every batch norm running statistics and an affine map far from the identity, and
  /// every ACON layer a beta and generator away from their initial values, so that folding
  /// and each parameter are really exercised. The batch norm that closes a residual branch
  /// gets a small scale (as trained ResNets have), so that the logits of the deep ResNets stay
  /// in the tens: with unit scales ResNet-50's reach thousands, and float32 rounding alone
  /// (acon's fused and unfused paths) then differs by 1e-4.
  static func randomizeState(_ model: Module, seed: UInt64) {
    var rng = RandomGenerator(seed: seed)
    let residualEnds = model.namedModules().compactMap { _, m -> BatchNorm2d? in
      (m as? Bottleneck)?.bn3 ?? (m as? BasicBlock)?.bn2
    }
    for (_, module) in model.namedModules() {
      if let bn = module as? BatchNorm2d {
        let c = bn.channels
        let closesResidual = residualEnds.contains { $0 === bn }
        bn.runningMean.value = Tensor.randomNormal([c], std: 0.2, using: &rng)
        bn.runningVariance.value = Tensor.randomUniform([c], low: 0.5, high: 1.5, using: &rng)
        bn.weight.value = Tensor.randomUniform(
          [c], low: closesResidual ? 0.1 : 0.6, high: closesResidual ? 0.3 : 1.4, using: &rng)
        bn.bias.value = Tensor.randomNormal([c], std: 0.2, using: &rng)
      }
    }
    for (name, p) in model.namedParameters() {
      let shape = p.value.shape
      if name.hasSuffix(".beta") {
        p.value = Tensor.randomUniform(shape, low: 0.5, high: 2, using: &rng)
      } else if name.hasSuffix(".fc.weight") || name.hasSuffix(".fc.bias") {
        p.value = try! p.value + Tensor.randomNormal(shape, std: 0.3, using: &rng)
      }
    }
  }

  /// Writes `case.onnx` and `case.io.safetensors` (input, acon's eval-mode logits) into `dir`.
  static func write(_ c: Case, to dir: URL, perturbExpected: Float = 0) throws {
    let model = try ModelZoo.make(c.configuration, seed: 5)
    randomizeState(model, seed: 6)
    model.eval()
    var rng = RandomGenerator(seed: 7)
    let input = Tensor.randomNormal([2, c.inputChannels, c.inputSize, c.inputSize], using: &rng)
    var logits = try withoutGradients { try model(input) }
    if perturbExpected != 0 { logits = try logits * Tensor(scalar: 1 + perturbExpected) }
    let onnx = try ONNXExporter.export(
      model, configuration: c.configuration,
      options: .init(
        inputSize: c.inputSize, batchSize: 2, dynamicBatch: c.dynamicBatch, opset: c.opset))
    let stem = perturbExpected != 0 ? "control_" + c.name : c.name
    try Data(onnx.serialized()).write(to: dir.appendingPathComponent(stem + ".onnx"))
    try SafeTensors.write(
      [("input", input), ("logits", logits)],
      to: dir.appendingPathComponent(stem + ".io.safetensors"))
  }

  /// Runs scripts/onnx/check_onnx.py over `dir`: one result per case, by case name.
  static func check(_ dir: URL) throws -> [String: [String: Any]] {
    let python = repository.appendingPathComponent(".venv-onnx/bin/python")
    guard FileManager.default.isExecutableFile(atPath: python.path) else {
      throw InteropError(
        python.path, "missing: run scripts/setup.sh (or scripts/onnx/setup_venv.sh) first")
    }
    let r = try run(
      python, [repository.appendingPathComponent("scripts/onnx/check_onnx.py").path, dir.path])
    var results: [String: [String: Any]] = [:]
    for line in r.stdout.split(separator: "\n") {
      if let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let name = object["case"] as? String
      {
        results[name] = object
      }
    }
    if results.isEmpty { throw InteropError("check_onnx.py", "no results: \(r.stderr)") }
    return results
  }

  @Test func everyFamilyAndActivationMatchesOnnxruntime() throws {
    let dir = scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let cases = Self.cases
    for c in cases { try Self.write(c, to: dir) }
    // A control: acon's logits moved by 1e-3 relative must fail the comparison.
    try Self.write(
      Case(model: "mobilenetv1-0.25", activation: "acon-c"), to: dir, perturbExpected: 1e-3)
    let results = try Self.check(dir)
    #expect(results.count == cases.count + 1)
    for c in cases {
      let result = try #require(results[c.name], "no result for \(c.name)")
      #expect(result["ok"] as? Bool == true, "\(c.name): \(result)")
      #expect((result["relative_error"] as? Double ?? 1) <= 1e-4, "\(c.name): \(result)")
      #expect(
        result["ir_version"] as? Int == ONNXModel.irVersion && result["opset"] as? Int == c.opset)
    }
    let control = try #require(results.first { $0.key.hasPrefix("control_") }?.value)
    #expect(
      control["ok"] as? Bool == false, "the check must fail when the outputs differ: \(control)")
  }

  /// The graph has the shape the issue asks for: batch norms folded, ACON-C as core ops, the
  /// channel-wise meta-ACON generator as pooling + two 1x1 convolutions.
  @Test func graphsUseCoreOpsWithBatchNormFolded() throws {
    let config = ModelConfiguration(model: "shufflenetv2-0.5x", activation: "acon-c", classes: 1000)
    let model = try ModelZoo.make(config)
    let counts = ONNXExporter.operatorCounts(
      try ONNXExporter.export(model, configuration: config, options: .init(inputSize: 224)))
    let convs = model.namedModules().filter { $0.1 is Conv2d }.count
    let aconLayers = model.namedModules().filter { $0.1 is AconC }.count
    #expect(counts["Conv"] == convs && counts["BatchNormalization"] == nil)
    #expect(counts["Sigmoid"] == aconLayers && counts["Gather"] == 2 * 13 && counts["Gemm"] == 1)
    let metaConfig = ModelConfiguration(
      model: "shufflenetv2-0.5x", activation: "meta-acon", classes: 1000)
    let meta = try ModelZoo.make(metaConfig)
    let metaCounts = ONNXExporter.operatorCounts(
      try ONNXExporter.export(meta, configuration: metaConfig, options: .init(inputSize: 224)))
    let metaLayers = meta.namedModules().filter { $0.1 is MetaAconC }.count
    #expect(metaCounts["Conv"] == convs + 2 * metaLayers)
    #expect(metaCounts["GlobalAveragePool"] == metaLayers + 1)
  }

  /// `acon export` on a `.pth`, checked against `acon forward` through the binary; and the
  /// bad inputs.
  @Test(
    .enabled(
      if: TestEnvironment.aconBuilt,
      "needs the acon binary: run `swift build -c release --product acon` first (scripts/test.sh does)"
    ))
  func exportCommandMatchesForwardCommand() throws {
    let dir = scratchDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let c = Case(
      model: "shufflenetv2-0.25x", activation: "meta-acon", inputChannels: 1, inputSize: 28,
      smallInput: true)
    let model = try ModelZoo.make(c.configuration, seed: 8)
    Self.randomizeState(model, seed: 9)
    let weights = dir.appendingPathComponent("w.pth")
    let entries = model.stateEntries().map { SafeTensors.Entry("module." + $0.name, $0.value) }
    try PyTorchCheckpoint.write(entries, to: weights)
    let flags = [
      "--model", c.model, "--activation", c.activation, "--classes", "10", "--input-channels", "1",
      "--small-input",
    ]
    let onnx = dir.appendingPathComponent("cli.onnx")
    let export = try runACON(
      ["export", "--weights", weights.path, "--output", onnx.path, "--dynamic-batch"] + flags)
    #expect(export.status == 0, "\(export.stderr)")
    #expect(export.stdout.contains("IR 8, opset 17"), "\(export.stdout)")
    var rng = RandomGenerator(seed: 10)
    let input = Tensor.randomNormal([3, 1, 28, 28], using: &rng)
    let inputURL = dir.appendingPathComponent("x.safetensors")
    try SafeTensors.write([("input", input)], to: inputURL)
    let forwardURL = dir.appendingPathComponent("y.safetensors")
    let forward = try runACON(
      ["forward", "--weights", weights.path, "--input", inputURL.path, "--output", forwardURL.path]
        + flags)
    #expect(forward.status == 0, "\(forward.stderr)")
    let logits = try SafeTensors.read(forwardURL).tensor("logits")
    try SafeTensors.write(
      [("input", input), ("logits", logits)], to: dir.appendingPathComponent("cli.io.safetensors"))
    let result = try #require(try Self.check(dir)["cli"])
    #expect(result["ok"] as? Bool == true, "\(result)")

    let help = try runACON(["export", "--help"])
    #expect(help.stdout.contains("IR version 8") && help.stdout.contains("opset 17"))
    for (arguments, message) in [
      (["--model", "resnet7", "--activation", "relu"], "unknown model 'resnet7'"),
      (flags + ["--opset", "30"], "export writes opsets 13 to 21"),
      (["--model", c.model, "--activation", "acon-c", "--classes", "10"], "does not fit"),
    ] {
      let r = try runACON(
        [
          "export", "--weights", weights.path, "--output",
          dir.appendingPathComponent("bad.onnx").path,
        ] + arguments)
      #expect(r.status != 0, "\(arguments)")
      #expect(r.stderr.contains(message), "\(arguments): \(r.stderr)")
    }
  }
}
