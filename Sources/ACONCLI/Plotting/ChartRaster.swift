import Foundation

/// A small rasteriser for the chart shapes, for PNG output: anti-aliased lines, circles and
/// rectangles blended into an RGB float buffer, and text in a built-in 5x7 bitmap font
/// (`BitmapFont`), so that PNG needs no font library.
struct ChartRaster {
  let width: Int
  let height: Int
  /// Pixels per SVG unit.
  let scale: Double
  /// Interleaved RGB in [0, 1], row-major from the top.
  private(set) var rgb: [Float]

  /// Draws `figure` at `scale` pixels per SVG unit on white.
  init(figure: ChartFigure, scale: Double = 2) {
    let (w, h) = figure.size
    self.scale = scale
    width = max(1, Int((w * scale).rounded()))
    height = max(1, Int((h * scale).rounded()))
    rgb = [Float](repeating: 1, count: width * height * 3)
    for shape in figure.shapes() { draw(shape) }
  }

  /// 8-bit RGB bytes for `ImageCodec.writePNG`.
  func rgbBytes() -> [UInt8] { rgb.map { UInt8((min(max($0, 0), 1) * 255).rounded()) } }

  /// The RGB colour at pixel (x, y), for tests.
  func pixel(_ x: Int, _ y: Int) -> (Float, Float, Float) {
    let i = (y * width + x) * 3
    return (rgb[i], rgb[i + 1], rgb[i + 2])
  }

  /// `#rgb`, `#rrggbb`, `white` or `black` as RGB in [0, 1] (anything else: black).
  static func color(_ name: String) -> (Float, Float, Float) {
    switch name.lowercased() {
    case "white": return (1, 1, 1)
    case "black": return (0, 0, 0)
    default: break
    }
    var hex = name.hasPrefix("#") ? String(name.dropFirst()) : name
    if hex.count == 3 { hex = hex.map { "\($0)\($0)" }.joined() }
    guard hex.count == 6, let v = UInt32(hex, radix: 16) else { return (0, 0, 0) }
    return (Float((v >> 16) & 255) / 255, Float((v >> 8) & 255) / 255, Float(v & 255) / 255)
  }

  /// Mixes `color` into pixel (x, y) with weight `alpha`.
  mutating func blend(_ x: Int, _ y: Int, _ color: (Float, Float, Float), _ alpha: Float) {
    guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
    let a = min(alpha, 1)
    let i = (y * width + x) * 3
    rgb[i] += (color.0 - rgb[i]) * a
    rgb[i + 1] += (color.1 - rgb[i + 1]) * a
    rgb[i + 2] += (color.2 - rgb[i + 2]) * a
  }

  mutating func draw(_ shape: ChartShape) {
    let s = scale
    switch shape {
    case .group, .endGroup:
      break
    case .line(let a, let b, let color, let width, let dash):
      stroke([a, b], color: color, width: width, dash: dash)
    case .path(let runs, let color, let width, let dash, _):
      for run in runs { stroke(run, color: color, width: width, dash: dash) }
    case .rect(let x, let y, let w, let h, let fill, let opacity, let stroke, _):
      if let fill {
        fillRect(
          x0: x * s, y0: y * s, x1: (x + w) * s, y1: (y + h) * s, Self.color(fill), Float(opacity))
      }
      if let stroke {
        let corners = [
          ChartPoint(x: x, y: y), ChartPoint(x: x + w, y: y), ChartPoint(x: x + w, y: y + h),
          ChartPoint(x: x, y: y + h), ChartPoint(x: x, y: y),
        ]
        self.stroke(corners, color: stroke, width: 1, dash: nil)
      }
    case .circle(let c, let radius, let fill, let opacity):
      fillCircle(c.x * s, c.y * s, radius * s, Self.color(fill), Float(opacity))
    case .text(let p, let content, let anchor, let size, let upwards):
      drawText(content, at: p, anchor: anchor, size: size, upwards: upwards)
    }
  }

  /// A polyline in SVG units, `width` wide, dashed by an SVG dash pattern carried across
  /// the segments.
  mutating func stroke(
    _ points: [ChartPoint], color name: String, width lineWidth: Double, dash: String?
  ) {
    let color = Self.color(name)
    let pattern = (dash ?? "").split(separator: ",").compactMap {
      Double($0.trimmingCharacters(in: .whitespaces))
    }
    .filter { $0 > 0 }
    var dashIndex = 0
    var dashLeft = pattern.first ?? .infinity
    var on = true
    for (a, b) in zip(points, points.dropFirst()) {
      let length = hypot(b.x - a.x, b.y - a.y)
      var t0 = 0.0
      while t0 < length {
        let t1 = pattern.isEmpty ? length : min(length, t0 + dashLeft)
        if on {
          let f0 = length == 0 ? 0 : t0 / length
          let f1 = length == 0 ? 1 : t1 / length
          segment(
            a.x + f0 * (b.x - a.x), a.y + f0 * (b.y - a.y), a.x + f1 * (b.x - a.x),
            a.y + f1 * (b.y - a.y), lineWidth, color)
        }
        if !pattern.isEmpty {
          dashLeft -= t1 - t0
          if dashLeft <= 1e-9 {
            dashIndex = (dashIndex + 1) % pattern.count
            dashLeft = pattern[dashIndex]
            on.toggle()
          }
        }
        t0 = t1
        if length == 0 { break }
      }
    }
  }

  /// One segment in SVG units: coverage from each pixel centre's distance to the segment,
  /// one pixel of soft edge.
  mutating func segment(
    _ ax: Double, _ ay: Double, _ bx: Double, _ by: Double, _ lineWidth: Double,
    _ color: (Float, Float, Float)
  ) {
    let s = scale
    let (x0, y0, x1, y1) = (ax * s, ay * s, bx * s, by * s)
    let half = max(lineWidth * s, 1) / 2
    let (dx, dy) = (x1 - x0, y1 - y0)
    let lengthSquared = dx * dx + dy * dy
    let minX = Int((min(x0, x1) - half - 1).rounded(.down))
    let maxX = Int((max(x0, x1) + half + 1).rounded(.up))
    let minY = Int((min(y0, y1) - half - 1).rounded(.down))
    let maxY = Int((max(y0, y1) + half + 1).rounded(.up))
    guard minX < width, minY < height, maxX >= 0, maxY >= 0 else { return }
    for y in max(minY, 0)...min(maxY, height - 1) {
      for x in max(minX, 0)...min(maxX, width - 1) {
        let (px, py) = (Double(x) + 0.5, Double(y) + 0.5)
        let t =
          lengthSquared == 0 ? 0 : min(max(((px - x0) * dx + (py - y0) * dy) / lengthSquared, 0), 1)
        let distance = hypot(px - (x0 + t * dx), py - (y0 + t * dy))
        blend(x, y, color, Float(min(max(half + 0.5 - distance, 0), 1)))
      }
    }
  }

  /// A rectangle in pixels, with fractional coverage at its edges.
  mutating func fillRect(
    x0: Double, y0: Double, x1: Double, y1: Double, _ color: (Float, Float, Float), _ alpha: Float
  ) {
    guard x1 > x0, y1 > y0 else { return }
    for y in max(Int(y0.rounded(.down)), 0)..<min(Int(y1.rounded(.up)), height) {
      let cy = min(Double(y + 1), y1) - max(Double(y), y0)
      for x in max(Int(x0.rounded(.down)), 0)..<min(Int(x1.rounded(.up)), width) {
        let cx = min(Double(x + 1), x1) - max(Double(x), x0)
        blend(x, y, color, alpha * Float(cx * cy))
      }
    }
  }

  /// A disc in pixels.
  mutating func fillCircle(
    _ cx: Double, _ cy: Double, _ r: Double, _ color: (Float, Float, Float), _ alpha: Float
  ) {
    let radius = max(r, 0.75)
    for y in max(Int(cy - radius - 1), 0)...max(min(Int(cy + radius + 1), height - 1), 0) {
      for x in max(Int(cx - radius - 1), 0)...max(min(Int(cx + radius + 1), width - 1), 0) {
        let distance = hypot(Double(x) + 0.5 - cx, Double(y) + 0.5 - cy)
        blend(x, y, color, alpha * Float(min(max(radius + 0.5 - distance, 0), 1)))
      }
    }
  }

  /// Text in the bitmap font: each font pixel becomes a `k x k` block, `k` chosen so that the
  /// 7-row capitals are about 0.7 of the font size, as in a sans-serif face.
  mutating func drawText(
    _ content: String, at p: ChartPoint, anchor: ChartShape.Anchor, size: Double, upwards: Bool
  ) {
    let k = max(1, Int((0.7 * size * scale / Double(BitmapFont.rows)).rounded()))
    let glyphs = content.map(BitmapFont.glyph)
    let advance = (BitmapFont.columns + 1) * k
    let total = glyphs.count * advance - k
    let offset: Int
    switch anchor {
    case .start: offset = 0
    case .middle: offset = -total / 2
    case .end: offset = -total
    }
    let (ox, oy) = (Int((p.x * scale).rounded()), Int((p.y * scale).rounded()))
    let black: (Float, Float, Float) = (0, 0, 0)
    for (i, glyph) in glyphs.enumerated() {
      for (row, bits) in glyph.enumerated() {
        for column in 0..<BitmapFont.columns
        where bits & (1 << (BitmapFont.columns - 1 - column)) != 0 {
          // Along the text u, across it v (row 6 sits on the baseline, row 7 below it).
          let u = offset + i * advance + column * k
          let v = (row - BitmapFont.rows) * k
          for du in 0..<k {
            for dv in 0..<k {
              if upwards {
                blend(ox + v + dv, oy - u - du, black, 1)
              } else {
                blend(ox + u + du, oy + v + dv, black, 1)
              }
            }
          }
        }
      }
    }
  }
}

/// A 5x7 bitmap font for ASCII and the few other characters the charts print (β, ′); rows
/// below the seventh are descenders. Unknown characters draw as `?`.
enum BitmapFont {
  static let columns = 5
  /// Rows above the baseline.
  static let rows = 7

  /// The rows of `character`'s glyph, one bit per column, most significant bit on the left.
  static func glyph(_ character: Character) -> [UInt8] {
    glyphs[character] ?? glyphs["?"]!
  }

  /// Every character with a glyph of its own.
  static var characters: [Character] { Array(glyphs.keys) }

  static let glyphs: [Character: [UInt8]] = {
    var table: [Character: [UInt8]] = [:]
    for (character, art) in art {
      table[character] = art.split(separator: "|").map { row in
        row.reduce(UInt8(0)) { $0 << 1 | ($1 == "#" ? 1 : 0) }
      }
    }
    table["′"] = table["'"]
    table["\u{2212}"] = table["-"]
    return table
  }()

  private static let art: [Character: String] = [
    " ": ".....|.....|.....|.....|.....|.....|.....",
    "!": "..#..|..#..|..#..|..#..|..#..|.....|..#..",
    "\"": ".#.#.|.#.#.|.....|.....|.....|.....|.....",
    "#": ".#.#.|#####|.#.#.|.#.#.|#####|.#.#.|.....",
    "$": "..#..|.####|#.#..|.###.|..#.#|####.|..#..",
    "%": "##..#|##..#|...#.|..#..|.#...|#..##|#..##",
    "&": ".##..|#..#.|.##..|.#...|#.#.#|#..#.|.##.#",
    "'": "..#..|..#..|.....|.....|.....|.....|.....",
    "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.",
    ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
    "*": ".....|..#..|#.#.#|.###.|#.#.#|..#..|.....",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....",
    ",": ".....|.....|.....|.....|..##.|..#..|.#...",
    "-": ".....|.....|.....|#####|.....|.....|.....",
    ".": ".....|.....|.....|.....|.....|.##..|.##..",
    "/": "....#|....#|...#.|..#..|.#...|#....|#....",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....",
    ";": ".....|.##..|.##..|.....|.##..|..#..|.#...",
    "<": "...#.|..#..|.#...|#....|.#...|..#..|...#.",
    "=": ".....|.....|#####|.....|#####|.....|.....",
    ">": ".#...|..#..|...#.|....#|...#.|..#..|.#...",
    "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
    "@": ".###.|#...#|....#|.##.#|#.#.#|#.#.#|.###.",
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.",
    "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####",
    "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####",
    "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####",
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....",
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.",
    "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
    "[": ".###.|.#...|.#...|.#...|.#...|.#...|.###.",
    "\\": "#....|#....|.#...|..#..|...#.|....#|....#",
    "]": ".###.|...#.|...#.|...#.|...#.|...#.|.###.",
    "^": "..#..|.#.#.|#...#|.....|.....|.....|.....",
    "_": ".....|.....|.....|.....|.....|.....|#####",
    "`": ".#...|..#..|.....|.....|.....|.....|.....",
    "a": ".....|.....|.###.|....#|.####|#...#|.####",
    "b": "#....|#....|#.##.|##..#|#...#|#...#|####.",
    "c": ".....|.....|.###.|#....|#....|#...#|.###.",
    "d": "....#|....#|.##.#|#..##|#...#|#...#|.####",
    "e": ".....|.....|.###.|#...#|#####|#....|.###.",
    "f": "..##.|.#..#|.#...|###..|.#...|.#...|.#...",
    "g": ".....|.....|.####|#...#|#...#|.####|....#|.###.",
    "h": "#....|#....|#.##.|##..#|#...#|#...#|#...#",
    "i": "..#..|.....|.##..|..#..|..#..|..#..|.###.",
    "j": "...#.|.....|..##.|...#.|...#.|...#.|#..#.|.##..",
    "k": "#....|#....|#..#.|#.#..|##...|#.#..|#..#.",
    "l": ".##..|..#..|..#..|..#..|..#..|..#..|.###.",
    "m": ".....|.....|##.#.|#.#.#|#.#.#|#...#|#...#",
    "n": ".....|.....|#.##.|##..#|#...#|#...#|#...#",
    "o": ".....|.....|.###.|#...#|#...#|#...#|.###.",
    "p": ".....|.....|####.|#...#|#...#|####.|#....|#....",
    "q": ".....|.....|.####|#...#|#...#|.####|....#|....#",
    "r": ".....|.....|#.##.|##..#|#....|#....|#....",
    "s": ".....|.....|.####|#....|.###.|....#|####.",
    "t": ".#...|.#...|###..|.#...|.#...|.#..#|..##.",
    "u": ".....|.....|#...#|#...#|#...#|#..##|.##.#",
    "v": ".....|.....|#...#|#...#|#...#|.#.#.|..#..",
    "w": ".....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.",
    "x": ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#",
    "y": ".....|.....|#...#|#...#|#...#|.####|....#|.###.",
    "z": ".....|.....|#####|...#.|..#..|.#...|#####",
    "{": "...#.|..#..|..#..|.#...|..#..|..#..|...#.",
    "|": "..#..|..#..|..#..|..#..|..#..|..#..|..#..",
    "}": ".#...|..#..|..#..|...#.|..#..|..#..|.#...",
    "~": ".....|.....|.#...|#.#.#|...#.|.....|.....",
    "β": ".##..|#..#.|#.#..|#..#.|#...#|##..#|#.##.|#....",
  ]
}
