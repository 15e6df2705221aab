import ACONData
import ACONModels
import ACONNN
import ACONTensor
import Foundation
import Testing

@testable import ACONCLI

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// What a parsed SVG document holds: every element's name and attributes, in document order,
/// and the text of every `<text>` element.
final class SVGOutline: NSObject, XMLParserDelegate {
  var elements: [(name: String, attributes: [String: String])] = []
  var texts: [String] = []
  private var inText = false

  /// Parses `svg`, failing the test when it is not well-formed XML.
  static func parse(_ svg: String) throws -> SVGOutline {
    let outline = SVGOutline()
    let parser = XMLParser(data: Data(svg.utf8))
    parser.delegate = outline
    let ok = parser.parse()
    try #require(ok, "SVG is not well-formed: \(String(describing: parser.parserError))")
    #expect(outline.elements.first?.name == "svg")
    return outline
  }

  func parser(
    _ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
    qualifiedName: String?, attributes: [String: String]
  ) {
    elements.append((name, attributes))
    if name == "text" {
      inText = true
      texts.append("")
    }
  }

  func parser(_ parser: XMLParser, foundCharacters string: String) {
    if inText { texts[texts.count - 1] += string }
  }

  func parser(
    _ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?
  ) {
    if name == "text" { inText = false }
  }

  /// The `<path class="series">` elements: one per line series.
  var seriesPaths: [[String: String]] {
    elements.filter { $0.name == "path" && $0.attributes["class"] == "series" }.map(\.attributes)
  }

  /// The plot frames, one per panel: (x, y, width, height).
  var frames: [(Double, Double, Double, Double)] {
    elements.filter { $0.name == "rect" && $0.attributes["class"] == "frame" }.map {
      (
        Double($0.attributes["x"]!)!, Double($0.attributes["y"]!)!,
        Double($0.attributes["width"]!)!, Double($0.attributes["height"]!)!
      )
    }
  }

  /// The vertices of a path's `d` ("M x,y L x,y ...").
  static func vertices(_ d: String) -> [(Double, Double)] {
    d.split(whereSeparator: { $0 == "M" || $0 == "L" }).map {
      let xy = $0.split(separator: ",")
      return (Double(xy[0])!, Double(xy[1])!)
    }
  }
}

/// The message of the error `body` throws (nil when it does not throw).
func errorMessage(_ body: () throws -> Void) -> String? {
  do {
    try body()
    return nil
  } catch {
    return String(describing: error)
  }
}

@Suite("plot: SVG chart writer")
struct SVGChartTests {
  @Test func linesAndBoxesAreWellFormedAndInsideTheirFrames() throws {
    var lines = ChartPanel(
      title: "a <b> & c", xLabel: "epoch", yLabel: "loss",
      lines: [
        LineSeries(
          name: "one", color: "#000", points: [(1, 2.5), (2, 1.5), (3, 0.25)], markers: true),
        LineSeries(name: "two", color: "#f00", dash: "4,2", points: [(1, -3), (2, 7), (3, 1)]),
      ])
    lines.integerXTicks = true
    let boxes = ChartPanel(
      title: "boxes",
      distributions: [
        Distribution(label: "layer.0", values: [0.5, 0.6, 0.7, 2]),
        Distribution(label: "layer.1", values: (0..<1000).map { Double($0) / 1000 }),
      ])
    let figure = ChartFigure(title: "figure", panels: [lines, boxes], columns: 2)
    let outline = try SVGOutline.parse(figure.svg())
    #expect(outline.seriesPaths.count == 2)
    #expect(outline.frames.count == 2)
    #expect(outline.texts.contains("a <b> & c"))
    // Every vertex lies inside the first panel's frame, and the extremes touch its padding.
    let (fx, fy, fw, fh) = outline.frames[0]
    var ys: [Double] = []
    for path in outline.seriesPaths {
      let vertices = SVGOutline.vertices(path["d"]!)
      #expect(vertices.count == 3)
      for (x, y) in vertices {
        #expect(x >= fx && x <= fx + fw && y >= fy && y <= fy + fh)
        ys.append(y)
      }
    }
    #expect(ys.min()! > fy && ys.max()! < fy + fh)
    let domains = lines.domains()
    #expect(
      domains.y.contains(-3) && domains.y.contains(7) && domains.x.contains(1)
        && domains.x.contains(3))
    // Integer ticks: epochs 1, 2, 3 only.
    #expect(
      ChartFigure.ticks(domains.x.lowerBound, domains.x.upperBound, minimumStep: 1) == [1, 2, 3])
    // One box group per category, the strip thinned to the cap (every 4th of 1000 values).
    let groups = outline.elements.filter {
      $0.name == "g" && $0.attributes["class"] == "distribution"
    }
    #expect(groups.count == 2)
    let dots = outline.elements.filter { $0.name == "circle" }.count
    #expect(ChartStyle.maximumStripPoints == 256)
    #expect(dots == 3 + 4 + 250)
  }

  @Test func ticksAreRoundAndCoverTheRange() {
    #expect(ChartFigure.ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1])
    #expect(ChartFigure.ticks(0, 0.7) == [0, 0.2, 0.4, 0.6])
    #expect(ChartFigure.ticks(0, 0.3) == [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    #expect(ChartFigure.ticks(-6, 6) == [-6, -4, -2, 0, 2, 4, 6])
    #expect(ChartFigure.ticks(1, 1).isEmpty)
    let t = ChartFigure.ticks(0.37, 0.41)
    #expect(t.count >= 4 && t.allSatisfy { $0 >= 0.37 && $0 <= 0.41 })
  }

  @Test func quartilesInterpolateLikeNumpy() throws {
    // numpy.percentile([1, 2, 3, 4], [25, 50, 75]) == [1.75, 2.5, 3.25]
    let q = try #require(Distribution(label: "", values: [4, 1, 3, 2]).summary)
    #expect(q.min == 1 && q.q1 == 1.75 && q.median == 2.5 && q.q3 == 3.25 && q.max == 4)
    #expect(Distribution(label: "", values: []).summary == nil)
  }

  @Test func plotActivationKeepsItsCurves() throws {
    let outline = try SVGOutline.parse(PlotActivation.render(p1: 1.2, p2: -0.4, beta: 1, range: 6))
    // ACON-C, Swish, ReLU; their derivatives and the two bounds.
    #expect(outline.seriesPaths.count == 8)
    #expect(outline.frames.count == 2)
    #expect(outline.texts.contains { $0.hasPrefix("bounds of ACON-C′: -0.5597, 1.3597") })
    for path in outline.seriesPaths { #expect(SVGOutline.vertices(path["d"]!).count == 401) }
  }
}

@Suite("plot: PNG rasteriser")
struct ChartRasterTests {
  @Test func drawsLinesBoxesAndTextWhereTheSVGPutsThem() throws {
    let panel = ChartPanel(
      title: "T", lines: [LineSeries(name: "", color: "#ff0000", points: [(0, 0.5), (1, 0.5)])])
    var boxes = ChartPanel(
      title: "", distributions: [Distribution(label: "x", values: [1, 2, 3], color: "#0000ff")])
    boxes.yDomain = 0...4
    let figure = ChartFigure(panels: [panel, boxes], columns: 2, panelWidth: 200, panelHeight: 150)
    let raster = ChartRaster(figure: figure, scale: 2)
    #expect(raster.width == 800 && raster.height == 300)
    #expect(raster.rgbBytes().count == 800 * 300 * 3)
    // Corners stay white; the horizontal red line crosses the middle of the first frame.
    #expect(raster.pixel(1, 1) == (1, 1, 1))
    let shapes = figure.shapes()
    var frames: [(Double, Double, Double, Double)] = []
    for shape in shapes {
      if case .rect(let x, let y, let w, let h, _, _, _, "frame") = shape {
        frames.append((x, y, w, h))
      }
    }
    #expect(frames.count == 2)
    let (fx, fy, fw, fh) = frames[0]
    let middle = raster.pixel(Int((fx + fw / 2) * 2), Int((fy + fh / 2) * 2))
    #expect(middle.0 > 0.9 && middle.1 < 0.1 && middle.2 < 0.1, "\(middle)")
    // The blue box of the second panel: its median (2) at the middle of the y range.
    let (bx, by, bw, bh) = frames[1]
    let median = raster.pixel(Int((bx + bw / 2) * 2), Int((by + bh / 2) * 2))
    #expect(median.2 > 0.9 && median.0 < 0.1, "\(median)")
    // The title "T" is drawn in black somewhere above the first frame.
    var dark = 0
    for y in 0..<Int(fy * 2) {
      for x in 0..<Int((fx + fw) * 2) where raster.pixel(x, y).0 < 0.2 { dark += 1 }
    }
    #expect(dark > 10)
  }

  @Test func writesAPNGThatDecodes() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("acon.png").path
    try PlotActivation.parse(["--output", path, "--range", "4"]).run()
    let image = try ImageCodec.decode(file: path)
    #expect(image.width == 2000 && image.height == 880 && image.channels == 3)
    #expect(image.pixels.contains { $0 < 50 })
    #expect(image.pixels.filter { $0 == 255 }.count > image.pixels.count / 2)
  }

  /// The README's own command line: negative values are values, not flags.
  @Test func negativeParametersAsTheREADMEWritesThem() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("acon.svg").path
    let r = try runACON([
      "plot-activation", "--p1", "1.2", "--p2", "-0.4", "--beta", "-1", "--output", path,
    ])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("p2 -0.4, beta -1"), "\(r.stdout)")
    let parsed = try PlotActivation.parse(["--p2", "-0.4", "--beta", "-2.5", "--output", path])
    #expect(parsed.p2 == -0.4 && parsed.beta == -2.5)
  }

  @Test func everyGlyphIsFiveColumnsWide() {
    #expect(BitmapFont.characters.count > 90)
    for c in BitmapFont.characters {
      let glyph = BitmapFont.glyph(c)
      #expect(glyph.count == 7 || glyph.count == 8, "\(c)")
      #expect(glyph.allSatisfy { $0 < 32 }, "\(c)")
    }
    #expect(BitmapFont.glyph("β").count == 8)
    // Unknown characters fall back to "?".
    #expect(BitmapFont.glyph("€") == BitmapFont.glyph("?"))
    #expect(BitmapFont.glyph(" ").allSatisfy { $0 == 0 })
  }
}

@Suite("plot curves")
struct PlotCurvesTests {
  func writeMetrics(_ rows: [(Int, Double, Double, Double)], to url: URL) throws {
    let lines = rows.map { epoch, train, top1, test in
      "{\"epoch\":\(epoch),\"iteration\":\(epoch * 10),\"lr\":0.1,\"train_loss\":\(train),"
        + "\"train_top1\":0.5,\"test_loss\":\(test),\"test_top1\":\(top1),\"test_top5\":0.9,"
        + "\"images_per_second\":100,\"seconds\":1}"
    }
    try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
  }

  @Test func twoRunsGiveOneLinePerRunInEachPanel() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let a = dir.appendingPathComponent("relu")
    let b = dir.appendingPathComponent("acon")
    for d in [a, b] {
      try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    }
    try writeMetrics(
      [(1, 2.0, 0.40, 1.8), (2, 1.5, 0.55, 1.4), (3, 1.2, 0.60, 1.3)],
      to: a.appendingPathComponent("metrics.jsonl"))
    // A resumed run repeats epoch 2: the later line wins; lines may come out of order.
    try writeMetrics(
      [(2, 9.9, 0.1, 9.9), (1, 2.2, 0.35, 1.9), (2, 1.4, 0.58, 1.35)],
      to: b.appendingPathComponent("metrics.jsonl"))
    let output = dir.appendingPathComponent("curves.svg").path
    let command = try PlotCurves.parse([
      "--metrics", a.path, "--metrics", b.appendingPathComponent("metrics.jsonl").path, "--output",
      output,
    ])
    let runs = try command.loadRuns()
    #expect(runs.map(\.label) == ["relu", "acon"])
    #expect(runs[1].epochs.map(\.epoch) == [1, 2])
    #expect(runs[1].epochs[1].trainLoss == 1.4)
    try command.run()
    let outline = try SVGOutline.parse(try String(contentsOfFile: output, encoding: .utf8))
    #expect(outline.frames.count == 3)
    #expect(outline.seriesPaths.count == 6)
    #expect(outline.texts.filter { $0 == "relu" }.count == 3)
    #expect(SVGOutline.vertices(outline.seriesPaths[0]["d"]!).count == 3)
    // The error panel plots 100 (1 - top1): its y range holds 40 to 65.
    let errorPanel = PlotCurves.figure(runs).panels[1]
    let y = errorPanel.domains().y
    #expect(y.contains(40) && y.contains(65) && errorPanel.title == "test top-1 error")
    // Labels override the directory names.
    let labelled = try PlotCurves.parse([
      "--metrics", a.path, "--metrics", b.path, "--labels", "ReLU,ACON-C", "--output", output,
    ])
    #expect(try labelled.loadRuns().map(\.label) == ["ReLU", "ACON-C"])
    // The same figure as PNG: three 420 x 360 panels drawn at twice the SVG's size.
    let png = dir.appendingPathComponent("curves.png").path
    try PlotCurves.parse(["--metrics", a.path, "--metrics", b.path, "--output", png]).run()
    let image = try ImageCodec.decode(file: png)
    #expect(image.width == 2 * 3 * 420 && image.height == 2 * 360)
  }

  @Test(
    .enabled(
      if: TestEnvironment.aconBuilt,
      "needs the acon binary: run `swift build -c release --product acon` first (scripts/test.sh does)"
    )) func theToolReportsABadLineAndExitsNonZero() throws
  {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let bad = dir.appendingPathComponent("metrics.jsonl")
    try "{\"epoch\":1,\"train_loss\":1,\"test_loss\":1,\"test_top1\":0.5}\nnot json\n"
      .write(to: bad, atomically: true, encoding: .utf8)
    let output = dir.appendingPathComponent("curves.svg").path
    let result = try runACON(["plot", "curves", "--metrics", dir.path, "--output", output])
    #expect(result.status != 0)
    #expect(result.stderr.contains("metrics.jsonl line 2: not valid JSON"), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: output))
  }

  @Test func badMetricsFilesNameTheFileAndLine() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let missing = dir.appendingPathComponent("nothing.jsonl").path
    #expect(errorMessage { _ = try PlotCurves.readMetrics(missing) }?.contains(missing) == true)
    let bad = dir.appendingPathComponent("bad.jsonl")
    try
      "{\"epoch\":1,\"train_loss\":1,\"test_loss\":1,\"test_top1\":0.5}\n{\"epoch\":2,\"train_loss\":\n"
      .write(to: bad, atomically: true, encoding: .utf8)
    let message = try #require(errorMessage { _ = try PlotCurves.readMetrics(bad.path) })
    #expect(
      message.contains("bad.jsonl line 2") && message.contains("not valid JSON"), "\(message)")
    try "{\"epoch\":1,\"train_loss\":1,\"test_loss\":1}\n".write(
      to: bad, atomically: true, encoding: .utf8)
    #expect(
      errorMessage { _ = try PlotCurves.readMetrics(bad.path) }?.contains(
        "line 1: missing or non-numeric \"test_top1\"") == true)
    try "[1, 2]\n".write(to: bad, atomically: true, encoding: .utf8)
    #expect(
      errorMessage { _ = try PlotCurves.readMetrics(bad.path) }?.contains("expected a JSON object")
        == true)
    try "{\"epoch\":1.5,\"train_loss\":1,\"test_loss\":1,\"test_top1\":0.5}\n".write(
      to: bad, atomically: true, encoding: .utf8)
    #expect(
      errorMessage { _ = try PlotCurves.readMetrics(bad.path) }?.contains("non-negative integer")
        == true)
    try "\n\n".write(to: bad, atomically: true, encoding: .utf8)
    #expect(
      errorMessage { _ = try PlotCurves.readMetrics(bad.path) }?.contains("no epochs") == true)
    // Flags: labels must match the runs, output must be SVG, at least one run.
    #expect(throws: (any Error).self) {
      try PlotCurves.parse(["--metrics", bad.path, "--labels", "a,b", "--output", "x.svg"])
    }
    #expect(throws: (any Error).self) {
      try PlotCurves.parse(["--metrics", bad.path, "--output", "x.pdf"])
    }
    #expect(throws: (any Error).self) { try PlotCurves.parse(["--output", "x.svg"]) }
  }
}

@Suite("plot beta")
struct PlotBetaTests {
  /// A small Fashion-MNIST-shaped model saved with this project's metadata.
  func saveModel(activation: String, in dir: URL, edit: (Module) -> Void = { _ in }) throws
    -> String
  {
    var config = ModelConfiguration(model: "mobilenetv1-0.25", activation: activation)
    config.classes = 10
    config.inputChannels = 1
    let model = try ModelZoo.make(config)
    edit(model)
    let url = dir.appendingPathComponent("\(activation).safetensors")
    try model.save(to: url, metadata: config.metadata)
    return url.path
  }

  @Test func perChannelBetaOfEveryACONLayerInNetworkOrder() throws {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    var expected: [(String, [Float])] = []
    let path = try saveModel(activation: "acon-c", in: dir) { model in
      for (k, (name, module)) in model.namedModules().enumerated() {
        guard let acon = module as? AconC else { continue }
        let c = acon.beta.value.count
        let values = (0..<c).map { Float(k) * 0.01 + Float($0) / Float(c) }
        acon.beta.value = Tensor(shape: acon.beta.value.shape, values: values)
        expected.append((name, values))
      }
    }
    let file = try SafeTensors.read(URL(fileURLWithPath: path))
    let betas = PlotBeta.channelBetas(file)
    #expect(betas.map(\.layer) == expected.map(\.0))
    #expect(betas.map(\.values) == expected.map(\.1))
    let output = dir.appendingPathComponent("beta.svg").path
    try PlotBeta.parse(["--weights", path, "--output", output]).run()
    let outline = try SVGOutline.parse(try String(contentsOfFile: output, encoding: .utf8))
    let groups = outline.elements.filter {
      $0.name == "g" && $0.attributes["class"] == "distribution"
    }
    #expect(groups.count == expected.count)
    for (name, _) in expected { #expect(outline.texts.contains(name)) }
    let summary = PlotBeta.summary(channels: betas, samples: [])
    #expect(summary.split(separator: "\n").count == expected.count + 1)
    #expect(summary.contains("\(expected[0].0) (\(expected[0].1.count) channels): mean "))
  }

  @Test func betaObserverSeesTheGeneratedBeta() throws {
    var rng = RandomGenerator(seed: 3)
    let x = Tensor.randomNormal([3, 16, 4, 4], using: &rng)
    for generator in MetaAconC.Generator.allCases {
      let layer = MetaAconC(channels: 16, reduction: 4, generator: generator, using: &rng)
      layer.eval()
      var seen: [[Float]] = []
      var shapes: [[Int]] = []
      layer.betaObserver = { beta in
        seen.append(beta.scalars)
        shapes.append(beta.shape)
      }
      try withoutGradients {
        _ = try layer(x)
        let direct = try layer.generateBeta(x)
        #expect(seen.count == 1, "\(generator)")
        #expect(shapes[0] == direct.shape, "\(generator)")
        #expect(seen[0] == direct.scalars, "\(generator)")
      }
    }
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func perSampleBetaOfMetaACONOverTestImages() throws
  {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = try saveModel(activation: "meta-acon", in: dir)
    let output = dir.appendingPathComponent("meta.svg").path
    let command = try PlotBeta.parse([
      "--weights", path, "--output", output, "--dataset", "fashion-mnist", "--images", "6",
      "--batch-size", "4", "--layers", "0,features.13.5",
    ])
    let file = try SafeTensors.read(URL(fileURLWithPath: path))
    let samples = try command.sampleBetas(file, dataset: "fashion-mnist")
    #expect(samples.map(\.layer) == ["features.0.2", "features.13.5"])
    // MobileNetV1 0.25: 8 channels after the stem, 256 in the last block.
    #expect(samples[0].perImage.count == 6 && samples[0].perImage.allSatisfy { $0.count == 8 })
    #expect(samples[1].perImage.allSatisfy { $0.count == 256 })
    #expect(samples.allSatisfy { $0.perImage.joined().allSatisfy { $0 > 0 && $0 < 1 } })
    // Different images give different beta (the point of meta-ACON).
    #expect(samples[0].perImage[0] != samples[0].perImage[1])
    try command.run()
    let outline = try SVGOutline.parse(try String(contentsOfFile: output, encoding: .utf8))
    #expect(outline.frames.count == 2)
    let groups = outline.elements.filter {
      $0.name == "g" && $0.attributes["class"] == "distribution"
    }
    #expect(groups.count == 12)
    // Default layers: up to four, from the first to the last.
    let names = (0..<27).map { "layer\($0)" }
    #expect(try PlotBeta.choose(nil, from: names) == [0, 9, 17, 26])
    #expect(try PlotBeta.choose(nil, from: ["only"]) == [0])
  }

  @Test(
    .enabled(
      if: TestEnvironment.fashionMNISTInstalled,
      "needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist; scripts/setup.sh installs it)"
    )) func badInputsGiveClearErrors() throws
  {
    let dir = temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("x.svg").path
    let missing = dir.appendingPathComponent("none.safetensors").path
    #expect(
      errorMessage { try PlotBeta.parse(["--weights", missing, "--output", out]).run() } != nil)
    let relu = try saveModel(activation: "relu", in: dir)
    let noBeta = try #require(
      errorMessage { try PlotBeta.parse(["--weights", relu, "--output", out]).run() })
    #expect(noBeta.contains("no ACON-A/B/C beta parameters"), "\(noBeta)")
    #expect(!noBeta.contains("--dataset"))
    let meta = try saveModel(activation: "meta-acon", in: dir)
    let hint = try #require(
      errorMessage { try PlotBeta.parse(["--weights", meta, "--output", out]).run() })
    #expect(hint.contains("meta-ACON") && hint.contains("--dataset"), "\(hint)")
    let notMeta = try #require(
      errorMessage {
        try PlotBeta.parse([
          "--weights", relu, "--output", out, "--dataset", "fashion-mnist", "--images", "2",
        ]).run()
      })
    #expect(notMeta.contains("no meta-ACON layers"), "\(notMeta)")
    let badLayer = try #require(
      errorMessage {
        try PlotBeta.parse([
          "--weights", meta, "--output", out, "--dataset", "fashion-mnist", "--images", "2",
          "--layers", "nope",
        ]).run()
      })
    #expect(
      badLayer.contains("no meta-ACON layer 'nope'") && badLayer.contains("0 features.0.2"),
      "\(badLayer)")
    #expect(!FileManager.default.fileExists(atPath: out))
    #expect(throws: (any Error).self) {
      try PlotBeta.parse(["--weights", meta, "--output", "x.jpg"])
    }
    #expect(throws: (any Error).self) {
      try PlotBeta.parse(["--weights", meta, "--output", out, "--images", "0"])
    }
  }
}
