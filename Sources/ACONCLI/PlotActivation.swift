import ACONNN
import ArgumentParser
import Foundation

/// Draws ACON-C beside Swish and ReLU, and their first derivatives with ACON-C's learnable
/// bounds as dashed lines (the paper's figure 7), to an SVG or PNG file.
struct PlotActivation: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plot-activation",
    abstract:
      "Plot ACON-C, Swish and ReLU and their derivatives (with ACON-C's bounds) to SVG or PNG.")

  // `.unconditional`: the value may start with a minus sign (`--p2 -0.4`).
  @Option(parsing: .unconditional, help: "ACON-C's p1.") var p1: Double = 1.2
  @Option(parsing: .unconditional, help: "ACON-C's p2.") var p2: Double = -0.4
  @Option(parsing: .unconditional, help: "ACON-C's switching factor beta.") var beta: Double = 1
  @Option(help: "Half-width of the x range.") var range: Double = 6
  @Option(help: "Output file (.svg or .png).") var output: String

  init() {}

  func validate() throws {
    try checkChartOutput(output)
    guard range > 0, range.isFinite, p1.isFinite, p2.isFinite, beta.isFinite else {
      throw ValidationError("--range must be positive; p1, p2, beta finite")
    }
  }

  func run() throws {
    try PlotActivation.figure(p1: p1, p2: p2, beta: beta, range: range).write(to: output)
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

  /// The SVG document of `figure(p1:p2:beta:range:)`.
  static func render(p1: Double, p2: Double, beta: Double, range: Double) -> String {
    figure(p1: p1, p2: p2, beta: beta, range: range).svg()
  }

  /// Two panels (functions, derivatives) with axes, ticks and legends.
  static func figure(p1: Double, p2: Double, beta: Double, range: Double) -> ChartFigure {
    let acon = Curve(
      name: "ACON-C (p1=\(fmt(p1)), p2=\(fmt(p2)), β=\(fmt(beta)))", color: "#d62728", dash: nil
    ) {
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
      Curve(name: "bounds of ACON-C′: \(fmt(lower)), \(fmt(upper))", color: "#d62728", dash: "6,4")
      { _ in upper },
      Curve(name: "", color: "#d62728", dash: "6,4") { _ in lower },
    ]
    return ChartFigure(
      panels: [
        panel(title: "activation f(x)", curves: [acon, swish, relu], range: range),
        panel(title: "first derivative f′(x)", curves: derivatives, range: range),
      ],
      columns: 2, panelWidth: 500, panelHeight: 440)
  }

  /// One panel: every curve sampled at 401 points over `[-range, range]`, the data's y range
  /// padded by 8%, axes through zero.
  private static func panel(title: String, curves: [Curve], range: Double) -> ChartPanel {
    let samples = 400
    let xs = (0...samples).map { -range + 2 * range * Double($0) / Double(samples) }
    var panel = ChartPanel(
      title: title, xLabel: "x",
      lines: curves.map { c in
        LineSeries(name: c.name, color: c.color, dash: c.dash, points: xs.map { ($0, c.f($0)) })
      })
    panel.xDomain = -range...range
    panel.yPadding = 0.08
    panel.zeroAxes = true
    return panel
  }

  private static func fmt(_ v: Double) -> String { ChartFigure.format(v) }
}
