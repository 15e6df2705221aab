import ACONData
import Foundation

/// One line of a chart: points joined in order, optionally marked, drawn as one SVG `<path>`.
struct LineSeries {
  /// The legend entry ("" keeps the series out of the legend).
  var name: String
  /// An SVG colour.
  var color: String
  /// An SVG dash pattern (`"6,4"`), nil for a solid line.
  var dash: String?
  /// The data points, in drawing order.
  var points: [(x: Double, y: Double)]
  /// Whether each point gets a dot (useful when there are few points, e.g. epochs).
  var markers: Bool

  init(
    name: String, color: String, dash: String? = nil, points: [(x: Double, y: Double)],
    markers: Bool = false
  ) {
    self.name = name
    self.color = color
    self.dash = dash
    self.points = points
    self.markers = markers
  }
}

/// One column of a categorical panel: a box plot (quartiles, median, min-max whiskers) with the
/// values drawn over it as a jittered strip.
struct Distribution {
  /// The category's label on the x axis.
  var label: String
  var values: [Double]
  var color: String

  init(label: String, values: [Double], color: String = ChartStyle.palette[0]) {
    self.label = label
    self.values = values
    self.color = color
  }

  /// Minimum, first quartile, median, third quartile, maximum (linear interpolation between
  /// order statistics, as numpy's default); nil for no values.
  var summary: (min: Double, q1: Double, median: Double, q3: Double, max: Double)? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    func quantile(_ q: Double) -> Double {
      let position = q * Double(sorted.count - 1)
      let lower = Int(position.rounded(.down))
      let upper = min(lower + 1, sorted.count - 1)
      let t = position - Double(lower)
      return sorted[lower] * (1 - t) + sorted[upper] * t
    }
    return (sorted[0], quantile(0.25), quantile(0.5), quantile(0.75), sorted[sorted.count - 1])
  }
}

/// Colours and sizes shared by every chart.
enum ChartStyle {
  /// Ten distinguishable colours (matplotlib's "tab10").
  static let palette = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
  ]
  /// Most strip points drawn per column: the box still summarises every value.
  static let maximumStripPoints = 256
}

/// A point in pixels, y pointing down.
struct ChartPoint: Equatable {
  var x: Double
  var y: Double
}

/// A drawing primitive in pixels: a figure is laid out once into these, then written as SVG
/// elements or rasterised for PNG.
enum ChartShape {
  /// Where a text's anchor point sits along it.
  enum Anchor: String { case start, middle, end }

  /// Opens a named group (SVG `<g class=...>`); groups nest and only structure the SVG.
  case group(String)
  case endGroup
  /// A segment; `dash` is an SVG dash pattern ("6,4").
  case line(ChartPoint, ChartPoint, color: String, width: Double, dash: String?)
  /// A rectangle filled (nil: not) with `opacity`, outlined in `stroke` (nil: not).
  case rect(
    x: Double, y: Double, width: Double, height: Double, fill: String?, opacity: Double,
    stroke: String?, className: String?)
  case circle(ChartPoint, radius: Double, fill: String, opacity: Double)
  /// One series: runs of joined points (a gap between runs).
  case path([[ChartPoint]], color: String, width: Double, dash: String?, className: String?)
  /// Text with its baseline through the point; `upwards` turns it to read bottom to top.
  case text(ChartPoint, String, anchor: Anchor, size: Double, upwards: Bool)
}

/// One panel: either line series against a numeric x axis, or distributions over categories.
struct ChartPanel {
  var title: String
  var xLabel: String
  var yLabel: String
  var lines: [LineSeries]
  /// Categories along the x axis (drawn after the lines, which then share the x positions
  /// 0, 1, 2, ... of the categories).
  var distributions: [Distribution]
  /// The x range; nil: the data's range (or the categories').
  var xDomain: ClosedRange<Double>?
  /// The y range; nil: the data's range with `yPadding` on each side.
  var yDomain: ClosedRange<Double>?
  /// Fraction of the data's y extent added above and below.
  var yPadding = 0.05
  /// Whether to draw the lines x = 0 and y = 0 when they are inside the panel.
  var zeroAxes = false
  /// Whether x ticks fall on whole numbers only (epochs).
  var integerXTicks = false
  /// Horizontal reference lines (e.g. y = 1), dashed grey, drawn where they fall inside the
  /// y range (they do not widen it).
  var referenceLines: [Double] = []

  init(
    title: String, xLabel: String = "", yLabel: String = "", lines: [LineSeries] = [],
    distributions: [Distribution] = []
  ) {
    self.title = title
    self.xLabel = xLabel
    self.yLabel = yLabel
    self.lines = lines
    self.distributions = distributions
  }

  /// The x and y ranges the panel draws: they contain every finite data value.
  func domains() -> (x: ClosedRange<Double>, y: ClosedRange<Double>) {
    var xs: [Double] = lines.flatMap { $0.points.map(\.x) }
    let ys: [Double] = lines.flatMap { $0.points.map(\.y) } + distributions.flatMap(\.values)
    if !distributions.isEmpty { xs += [-0.5, Double(distributions.count) - 0.5] }
    // Lines get a little room at the ends so that end markers are not cut by the frame.
    let x = xDomain ?? ChartPanel.range(of: xs, padding: distributions.isEmpty ? 0.03 : 0)
    let y = yDomain ?? ChartPanel.range(of: ys, padding: yPadding)
    return (x, y)
  }

  /// The finite values' range, widened by `padding` of its extent on each side; a single value
  /// gets a unit-wide range around it so that the axis still has a scale.
  static func range(of values: [Double], padding: Double) -> ClosedRange<Double> {
    let finite = values.filter(\.isFinite)
    guard let lo = finite.min(), let hi = finite.max() else { return 0...1 }
    if hi - lo < 1e-12 * max(1, abs(lo)) { return (lo - 0.5)...(hi + 0.5) }
    let pad = padding * (hi - lo)
    return (lo - pad)...(hi + pad)
  }
}

/// A figure of panels on a grid, written as a standalone SVG document.
struct ChartFigure {
  var title: String?
  var panels: [ChartPanel]
  /// Panels per row.
  var columns: Int
  /// Size of one panel in pixels.
  var panelWidth: Double
  var panelHeight: Double

  init(
    title: String? = nil, panels: [ChartPanel], columns: Int = 1, panelWidth: Double = 500,
    panelHeight: Double = 400
  ) {
    self.title = title
    self.panels = panels
    self.columns = max(1, columns)
    self.panelWidth = panelWidth
    self.panelHeight = panelHeight
  }

  var titleHeight: Double { title == nil ? 0 : 30 }
  var rows: Int { (panels.count + columns - 1) / columns }
  /// The document's size in pixels.
  var size: (width: Double, height: Double) {
    (
      panelWidth * Double(min(columns, max(panels.count, 1))),
      titleHeight + panelHeight * Double(rows)
    )
  }

  /// Every shape of the figure in drawing order, in pixels (y down): what both the SVG and
  /// the PNG writers draw.
  func shapes() -> [ChartShape] {
    let (width, _) = size
    var s: [ChartShape] = []
    if let title {
      s += text(width / 2, 20, title, anchor: .middle, size: 16)
    }
    for (i, panel) in panels.enumerated() {
      let origin = (
        x: panelWidth * Double(i % columns), y: titleHeight + panelHeight * Double(i / columns)
      )
      s += draw(panel, origin: origin)
    }
    return s
  }

  /// The SVG document.
  func svg() -> String {
    let (width, height) = size
    var s = """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
      viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>

      """
    for shape in shapes() { s += ChartFigure.svgElement(shape) }
    return s + "</svg>\n"
  }

  /// Writes the figure to `path`: PNG when the name ends in `.png` (drawn `pngScale` times the
  /// SVG's pixel size), SVG otherwise.
  func write(to path: String, pngScale: Double = 2) throws {
    if path.lowercased().hasSuffix(".png") {
      let raster = ChartRaster(figure: self, scale: pngScale)
      try ImageCodec.writePNG(
        pixels: raster.rgbBytes(), width: raster.width, height: raster.height, channels: 3, to: path
      )
    } else {
      try svg().write(toFile: path, atomically: true, encoding: .utf8)
    }
  }

  private func draw(_ panel: ChartPanel, origin: (x: Double, y: Double)) -> [ChartShape] {
    let (xd, yd) = panel.domains()
    // Rotated category labels need room below the axis, in proportion to the longest one.
    let longest = panel.distributions.map(\.label.count).max() ?? 0
    let bottom =
      panel.distributions.isEmpty
      ? 45.0 : min(180, 20 + 6.5 * Double(longest)) + (panel.xLabel.isEmpty ? 0 : 14)
    let margin = (left: 62.0, right: 15.0, top: 30.0, bottom: bottom)
    let plotW = panelWidth - margin.left - margin.right
    let plotH = panelHeight - margin.top - margin.bottom
    let left = origin.x + margin.left
    let top = origin.y + margin.top
    func px(_ x: Double) -> Double {
      left + (x - xd.lowerBound) / (xd.upperBound - xd.lowerBound) * plotW
    }
    func py(_ y: Double) -> Double {
      top + (yd.upperBound - y) / (yd.upperBound - yd.lowerBound) * plotH
    }
    // Values off the domain (a fixed range) are clamped to the frame rather than drawn outside.
    func cx(_ x: Double) -> Double { min(max(px(x), left), left + plotW) }
    func cy(_ y: Double) -> Double { min(max(py(y), top), top + plotH) }

    var s: [ChartShape] = [.group("panel")]
    s += text(left + plotW / 2, origin.y + 18, panel.title, anchor: .middle, size: 14)
    // Y ticks and grid.
    for t in ChartFigure.ticks(yd.lowerBound, yd.upperBound) {
      s += line(left - 5, py(t), left, py(t), color: "black")
      s += line(left, py(t), left + plotW, py(t), color: "#eeeeee")
      s += text(left - 8, py(t) + 4, ChartFigure.format(t), anchor: .end)
    }
    // X ticks: numbers, or the category labels rotated to read upwards.
    if panel.distributions.isEmpty {
      for t in ChartFigure.ticks(
        xd.lowerBound, xd.upperBound, minimumStep: panel.integerXTicks ? 1 : 0)
      {
        s += line(px(t), top + plotH, px(t), top + plotH + 5, color: "black")
        s += line(px(t), top, px(t), top + plotH, color: "#eeeeee")
        s += text(px(t), top + plotH + 18, ChartFigure.format(t), anchor: .middle)
      }
    } else {
      let size = panel.distributions.count > 40 ? 9.0 : 11
      for (i, d) in panel.distributions.enumerated() {
        let x = px(Double(i))
        s += line(x, top + plotH, x, top + plotH + 5, color: "black")
        let y = top + plotH + 10
        s += text(x + 3, y, d.label, anchor: .end, size: size, upwards: true)
      }
    }
    if panel.zeroAxes {
      if yd.contains(0) { s += line(left, py(0), left + plotW, py(0), color: "#999999") }
      if xd.contains(0) { s += line(px(0), top, px(0), top + plotH, color: "#999999") }
    }
    for r in panel.referenceLines where yd.contains(r) {
      s += line(left, py(r), left + plotW, py(r), color: "#999999", dash: "4,3")
    }
    // The frame after the grid, so that grid lines on the range's ends do not hide it.
    s += rect(left, top, plotW, plotH, fill: "none", stroke: "black", class: "frame")
    // Axis labels.
    if !panel.xLabel.isEmpty {
      s += text(left + plotW, origin.y + panelHeight - 6, panel.xLabel, anchor: .end)
    }
    if !panel.yLabel.isEmpty {
      let (x, y) = (origin.x + 14, top + plotH / 2)
      s += text(x, y, panel.yLabel, anchor: .middle, upwards: true)
    }
    // Boxes and strips.
    let halfBox = min(0.3 * plotW / Double(max(panel.distributions.count, 1)), 20)
    for (i, d) in panel.distributions.enumerated() {
      guard let q = d.summary else { continue }
      let x = px(Double(i))
      s.append(.group("distribution"))
      s += line(x, cy(q.min), x, cy(q.q1), color: d.color)
      s += line(x, cy(q.q3), x, cy(q.max), color: d.color)
      let boxHeight = max(cy(q.q1) - cy(q.q3), 0.5)
      s += rect(
        x - halfBox, cy(q.q3), 2 * halfBox, boxHeight, fill: d.color, opacity: 0.15, stroke: d.color
      )
      s += line(x - halfBox, cy(q.median), x + halfBox, cy(q.median), color: d.color, width: 2)
      // Deterministic jitter (golden-ratio sequence): the same data give the same picture.
      let step = max(
        1, (d.values.count + ChartStyle.maximumStripPoints - 1) / ChartStyle.maximumStripPoints)
      for k in stride(from: 0, to: d.values.count, by: step) where d.values[k].isFinite {
        let jitter = (Double(k) * 0.618033988749895).truncatingRemainder(dividingBy: 1) - 0.5
        s += circle(
          x + jitter * 1.4 * halfBox, cy(d.values[k]), radius: 1.6, fill: d.color, opacity: 0.5)
      }
      s.append(.endGroup)
    }
    // Lines: one path each, non-finite values break the line.
    for series in panel.lines {
      var runs: [[ChartPoint]] = [[]]
      for p in series.points {
        guard p.x.isFinite, p.y.isFinite else {
          if !runs[runs.count - 1].isEmpty { runs.append([]) }
          continue
        }
        runs[runs.count - 1].append(ChartPoint(x: cx(p.x), y: cy(p.y)))
      }
      s.append(
        .path(
          runs.filter { !$0.isEmpty }, color: series.color, width: 2, dash: series.dash,
          className: "series"))
      if series.markers {
        for p in series.points where p.x.isFinite && p.y.isFinite {
          s += circle(cx(p.x), cy(p.y), radius: 3, fill: series.color)
        }
      }
    }
    // Legend on a translucent background, in the inner corner that covers the fewest points.
    let entries = panel.lines.filter { !$0.name.isEmpty }
    if !entries.isEmpty {
      let longestName = entries.map(\.name.count).max() ?? 0
      let boxW = min(44 + 6.5 * Double(longestName), plotW - 8)
      let boxH = min(16 * Double(entries.count) + 6, plotH - 8)
      let corners = [
        (left + 4, top + 4), (left + plotW - 4 - boxW, top + 4),
        (left + 4, top + plotH - 4 - boxH), (left + plotW - 4 - boxW, top + plotH - 4 - boxH),
      ]
      // Points along every segment, not only the vertices: a line through the box covers it.
      var drawn: [(Double, Double)] = []
      for series in panel.lines {
        let points = series.points.filter { $0.x.isFinite && $0.y.isFinite }.map {
          (cx($0.x), cy($0.y))
        }
        drawn += points
        for (a, b) in zip(points, points.dropFirst()) {
          for k in 1..<16 {
            let t = Double(k) / 16
            drawn.append((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)))
          }
        }
      }
      func covered(_ corner: (Double, Double)) -> Int {
        drawn.filter {
          $0.0 >= corner.0 && $0.0 <= corner.0 + boxW && $0.1 >= corner.1 && $0.1 <= corner.1 + boxH
        }.count
      }
      // The first corner wins ties: top left, as readers expect.
      var (bx, by) = corners[0]
      var fewest = covered(corners[0])
      for corner in corners.dropFirst() where covered(corner) < fewest {
        (bx, by) = corner
        fewest = covered(corner)
      }
      s += rect(bx, by, boxW, boxH, fill: "white", opacity: 0.8, class: "legend")
      for (row, series) in entries.enumerated() {
        let y = by + 12 + 16 * Double(row)
        let x = bx + 6
        s += line(x, y - 4, x + 24, y - 4, color: series.color, width: 2, dash: series.dash)
        s += text(x + 30, y, series.name)
      }
    }
    return s + [.endGroup]
  }

  private func line(
    _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, color: String, width: Double = 1,
    dash: String? = nil
  ) -> [ChartShape] {
    [
      .line(
        ChartPoint(x: x1, y: y1), ChartPoint(x: x2, y: y2), color: color, width: width, dash: dash)
    ]
  }

  private func rect(
    _ x: Double, _ y: Double, _ width: Double, _ height: Double, fill: String,
    opacity: Double = 1, stroke: String? = nil, class className: String? = nil
  ) -> [ChartShape] {
    [
      .rect(
        x: x, y: y, width: width, height: height, fill: fill == "none" ? nil : fill,
        opacity: opacity, stroke: stroke, className: className)
    ]
  }

  private func circle(
    _ x: Double, _ y: Double, radius: Double, fill: String, opacity: Double = 1
  ) -> [ChartShape] {
    [.circle(ChartPoint(x: x, y: y), radius: radius, fill: fill, opacity: opacity)]
  }

  private func text(
    _ x: Double, _ y: Double, _ content: String, anchor: ChartShape.Anchor = .start,
    size: Double = 12, upwards: Bool = false
  ) -> [ChartShape] {
    [.text(ChartPoint(x: x, y: y), content, anchor: anchor, size: size, upwards: upwards)]
  }

  /// One shape as an SVG element.
  static func svgElement(_ shape: ChartShape) -> String {
    func f1(_ v: Double) -> String { String(format: "%.1f", v) }
    switch shape {
    case .group(let className):
      return "<g class=\"\(escape(className))\">\n"
    case .endGroup:
      return "</g>\n"
    case .line(let a, let b, let color, let width, let dash):
      return element(
        "line",
        [
          ("x1", f1(a.x)), ("y1", f1(a.y)), ("x2", f1(b.x)), ("y2", f1(b.y)), ("stroke", color),
          ("stroke-width", width == 1 ? nil : format(width)), ("stroke-dasharray", dash),
        ])
    case .rect(
      let x, let y, let width, let height, let fill, let opacity, let stroke, let className):
      return element(
        "rect",
        [
          ("class", className), ("x", f1(x)), ("y", f1(y)), ("width", f1(width)),
          ("height", f1(height)), ("fill", fill ?? "none"),
          ("fill-opacity", opacity == 1 ? nil : format(opacity)), ("stroke", stroke),
        ])
    case .circle(let c, let radius, let fill, let opacity):
      return element(
        "circle",
        [
          ("cx", f1(c.x)), ("cy", f1(c.y)), ("r", format(radius)), ("fill", fill),
          ("fill-opacity", opacity == 1 ? nil : format(opacity)),
        ])
    case .path(let runs, let color, let width, let dash, let className):
      let d = runs.map { run in
        run.enumerated().map { ($0 == 0 ? "M" : "L") + "\(f1($1.x)),\(f1($1.y))" }.joined()
      }.joined()
      return element(
        "path",
        [
          ("class", className), ("d", d), ("fill", "none"), ("stroke", color),
          ("stroke-width", format(width)), ("stroke-dasharray", dash),
        ])
    case .text(let p, let content, let anchor, let size, let upwards):
      return element(
        "text",
        [
          ("x", f1(p.x)), ("y", f1(p.y)), ("text-anchor", anchor.rawValue),
          ("font-size", size == 12 ? nil : format(size)),
          ("transform", upwards ? "rotate(-90 \(f1(p.x)) \(f1(p.y)))" : nil),
        ], content: content)
    }
  }

  /// One SVG element with its attributes in order (nil ones left out), values escaped.
  static func element(_ name: String, _ attributes: [(String, String?)], content: String? = nil)
    -> String
  {
    var s = "<" + name
    for (key, value) in attributes {
      if let value { s += " \(key)=\"\(escape(value))\"" }
    }
    guard let content else { return s + "/>\n" }
    return s + ">" + escape(content) + "</\(name)>\n"
  }

  private func f1(_ v: Double) -> String { String(format: "%.1f", v) }

  /// About six round tick values (steps of 1, 2 or 5 times a power of ten, at least
  /// `minimumStep`) inside `[lo, hi]`.
  static func ticks(_ lo: Double, _ hi: Double, minimumStep: Double = 0) -> [Double] {
    guard lo.isFinite, hi.isFinite, hi > lo else { return [] }
    let raw = max((hi - lo) / 6, minimumStep)
    let magnitude = pow(10, floor(log10(raw)))
    let multiple = [1.0, 2, 5, 10].first { $0 * magnitude >= raw } ?? raw / magnitude
    let step = multiple * magnitude
    // Whole multiples of the step, divided by a whole power of ten when the step is below 1
    // (0.6, not 3 x 0.2 = 0.6000000000000001), and never running sums: no drift.
    func tick(_ k: Double) -> Double {
      magnitude < 1 ? k * multiple / (1 / magnitude).rounded() : k * step
    }
    var result: [Double] = []
    var k = ceil(lo / step)
    while tick(k) <= hi + step * 1e-9 {
      let t = tick(k)
      result.append(abs(t) < step * 1e-9 ? 0 : t)
      k += 1
    }
    return result
  }

  /// A short number: four decimals at most, no trailing zeros.
  static func format(_ v: Double) -> String { String(format: "%g", (v * 1e4).rounded() / 1e4) }

  /// `s` safe inside SVG text and attribute values.
  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}
