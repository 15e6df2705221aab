import ACONNN
import ArgumentParser
import Foundation

/// Draws ACON-C beside Swish and ReLU, and their first derivatives with ACON-C's learnable
/// bounds as dashed lines (the paper's figure 7), to an SVG file.
struct PlotActivation: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plot-activation",
    abstract: "Plot ACON-C, Swish and ReLU and their derivatives (with ACON-C's bounds) to SVG.")

  @Option(help: "ACON-C's p1.") var p1: Double = 1.2
  @Option(help: "ACON-C's p2.") var p2: Double = -0.4
  @Option(help: "ACON-C's switching factor beta.") var beta: Double = 1
  @Option(help: "Half-width of the x range.") var range: Double = 6
  @Option(help: "Output file (.svg).") var output: String

  func validate() throws {
    guard output.lowercased().hasSuffix(".svg") else {
      throw ValidationError("--output must name an .svg file")
    }
    guard range > 0, range.isFinite, p1.isFinite, p2.isFinite, beta.isFinite else {
      throw ValidationError("--range must be positive; p1, p2, beta finite")
    }
  }

  func run() throws {
    let svg = PlotActivation.render(p1: p1, p2: p2, beta: beta, range: range)
    try svg.write(toFile: output, atomically: true, encoding: .utf8)
    let (lower, upper) = ACONMath.derivativeBounds(p1: p1, p2: p2)
    print(
      String(
        format: "wrote %@: ACON-C p1 %.3g, p2 %.3g, beta %.3g; f' bounds [%.4f, %.4f]", output,
        p1, p2, beta, lower, upper))
  }

  /// One curve: a name, a colour, a dash pattern and the function.
  struct Curve {
    var name: String
    var color: String
    var dash: String?
    var f: (Double) -> Double
  }

  /// The SVG document: two panels (functions, derivatives), axes, ticks, legends.
  static func render(p1: Double, p2: Double, beta: Double, range: Double) -> String {
    let acon = Curve(name: "ACON-C (p1=\(fmt(p1)), p2=\(fmt(p2)), β=\(fmt(beta)))", color: "#d62728", dash: nil) {
      ACONMath.aconC($0, p1: p1, p2: p2, beta: beta)
    }
    let swish = Curve(name: "Swish", color: "#1f77b4", dash: nil) { $0 * ACONMath.sigmoid($0) }
    let relu = Curve(name: "ReLU", color: "#7f7f7f", dash: nil) { max($0, 0) }
    let (lower, upper) = ACONMath.derivativeBounds(p1: p1, p2: p2)
    let derivatives = [
      Curve(name: "ACON-C′", color: "#d62728", dash: nil) {
        ACONMath.aconCDerivative($0, p1: p1, p2: p2, beta: beta)
      },
      Curve(name: "Swish′", color: "#1f77b4", dash: nil) { ACONMath.swishDerivative($0) },
      Curve(name: "ReLU′", color: "#7f7f7f", dash: nil) { $0 > 0 ? 1 : 0 },
      Curve(name: "bounds of ACON-C′: \(fmt(lower)), \(fmt(upper))", color: "#d62728", dash: "6,4") { _ in upper },
      Curve(name: "", color: "#d62728", dash: "6,4") { _ in lower },
    ]
    let width = 1000.0
    let height = 440.0
    var body = ""
    body += panel(
      title: "activation f(x)", curves: [acon, swish, relu], range: range,
      origin: (0, 0), size: (width / 2, height))
    body += panel(
      title: "first derivative f′(x)", curves: derivatives, range: range,
      origin: (width / 2, 0), size: (width / 2, height))
    return """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
      viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      \(body)</svg>

      """
  }

  private static func panel(
    title: String, curves: [Curve], range: Double, origin: (Double, Double),
    size: (Double, Double)
  ) -> String {
    let margin = (left: 50.0, right: 15.0, top: 30.0, bottom: 40.0)
    let plotW = size.0 - margin.left - margin.right
    let plotH = size.1 - margin.top - margin.bottom
    let samples = 400
    let xs = (0...samples).map { -range + 2 * range * Double($0) / Double(samples) }
    var lo = Double.infinity
    var hi = -Double.infinity
    for c in curves { for x in xs { let y = c.f(x); lo = min(lo, y); hi = max(hi, y) } }
    let pad = 0.08 * max(hi - lo, 1e-6)
    lo -= pad
    hi += pad
    func px(_ x: Double) -> Double { origin.0 + margin.left + (x + range) / (2 * range) * plotW }
    func py(_ y: Double) -> Double { origin.1 + margin.top + (hi - y) / (hi - lo) * plotH }
    var s = "<g>\n"
    s += "<text x=\"\(f1(origin.0 + margin.left + plotW / 2))\" y=\"\(f1(origin.1 + 18))\" text-anchor=\"middle\" font-size=\"14\">\(title)</text>\n"
    s += "<rect x=\"\(f1(px(-range)))\" y=\"\(f1(py(hi)))\" width=\"\(f1(plotW))\" height=\"\(f1(plotH))\" fill=\"none\" stroke=\"black\"/>\n"
    // Ticks and grid.
    for t in ticks(-range, range) {
      s += "<line x1=\"\(f1(px(t)))\" y1=\"\(f1(py(lo)))\" x2=\"\(f1(px(t)))\" y2=\"\(f1(py(lo) + 5))\" stroke=\"black\"/>\n"
      s += "<line x1=\"\(f1(px(t)))\" y1=\"\(f1(py(lo)))\" x2=\"\(f1(px(t)))\" y2=\"\(f1(py(hi)))\" stroke=\"#eeeeee\"/>\n"
      s += "<text x=\"\(f1(px(t)))\" y=\"\(f1(py(lo) + 18))\" text-anchor=\"middle\">\(fmt(t))</text>\n"
    }
    for t in ticks(lo, hi) {
      s += "<line x1=\"\(f1(px(-range) - 5))\" y1=\"\(f1(py(t)))\" x2=\"\(f1(px(-range)))\" y2=\"\(f1(py(t)))\" stroke=\"black\"/>\n"
      s += "<line x1=\"\(f1(px(-range)))\" y1=\"\(f1(py(t)))\" x2=\"\(f1(px(range)))\" y2=\"\(f1(py(t)))\" stroke=\"#eeeeee\"/>\n"
      s += "<text x=\"\(f1(px(-range) - 8))\" y=\"\(f1(py(t) + 4))\" text-anchor=\"end\">\(fmt(t))</text>\n"
    }
    // Axes through zero.
    if lo < 0 && hi > 0 {
      s += "<line x1=\"\(f1(px(-range)))\" y1=\"\(f1(py(0)))\" x2=\"\(f1(px(range)))\" y2=\"\(f1(py(0)))\" stroke=\"#999999\"/>\n"
    }
    s += "<line x1=\"\(f1(px(0)))\" y1=\"\(f1(py(lo)))\" x2=\"\(f1(px(0)))\" y2=\"\(f1(py(hi)))\" stroke=\"#999999\"/>\n"
    s += "<text x=\"\(f1(px(range)))\" y=\"\(f1(py(lo) + 34))\" text-anchor=\"end\">x</text>\n"
    for c in curves {
      let points = xs.map { "\(f1(px($0))),\(f1(py(c.f($0))))" }.joined(separator: " ")
      let dash = c.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
      s += "<polyline fill=\"none\" stroke=\"\(c.color)\" stroke-width=\"2\"\(dash) points=\"\(points)\"/>\n"
    }
    // Legend, top left.
    var row = 0.0
    for c in curves where !c.name.isEmpty {
      let y = py(hi) + 16 + 16 * row
      let x = px(-range) + 10
      let dash = c.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
      s += "<line x1=\"\(f1(x))\" y1=\"\(f1(y - 4))\" x2=\"\(f1(x + 24))\" y2=\"\(f1(y - 4))\" stroke=\"\(c.color)\" stroke-width=\"2\"\(dash)/>\n"
      s += "<text x=\"\(f1(x + 30))\" y=\"\(f1(y))\">\(escape(c.name))</text>\n"
      row += 1
    }
    return s + "</g>\n"
  }

  /// About six round tick values covering `[lo, hi]`.
  static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
    let raw = (hi - lo) / 6
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var t = ceil(lo / step) * step
    var result: [Double] = []
    while t <= hi + 1e-12 {
      result.append(abs(t) < step * 1e-9 ? 0 : t)
      t += step
    }
    return result
  }

  private static func f1(_ v: Double) -> String { String(format: "%.1f", v) }
  private static func fmt(_ v: Double) -> String { String(format: "%g", (v * 1e4).rounded() / 1e4) }
  private static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
  }
}
