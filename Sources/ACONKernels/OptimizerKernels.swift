/// Parameter-update kernels: one fused pass over the parameter, its gradient and its state.
public enum OptimizerKernel {
  /// PyTorch's SGD step (dampening 0, no Nesterov):
  /// `g = grad + decay * p; buf = momentum * buf + g` (`buf = g` on the first step); `p -= lr * buf`.
  public static func sgd(
    parameter p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
    momentumBuffer buf: UnsafeMutablePointer<Float>?, count: Int,
    learningRate lr: Float, momentum: Float, weightDecay: Float, firstStep: Bool
  ) {
    let decay = Float8(repeating: weightDecay)
    let mu = Float8(repeating: firstStep ? 0 : momentum)
    let rate = Float8(repeating: -lr)
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let o = range.lowerBound
      forEachVector(range.count) { i, l in
        let pv = load8(p + o + i, lanes: l)
        let gv = load8(g + o + i, lanes: l).plusProduct(decay, pv)
        var step = gv
        if let buf {
          step = gv.plusProduct(mu, load8(buf + o + i, lanes: l))
          store8(step, buf + o + i, lanes: l)
        }
        store8(pv.plusProduct(rate, step), p + o + i, lanes: l)
      }
    }
  }

  /// One Adam / AdamW step. With `decoupled`, weight decay shrinks the parameter directly (AdamW);
  /// otherwise it is added to the gradient (Adam with L2), as PyTorch does.
  public static func adam(
    parameter p: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
    firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
    count: Int, learningRate lr: Float, beta1: Float, beta2: Float, epsilon: Float,
    weightDecay: Float, decoupled: Bool, step t: Int
  ) {
    let correction1 = 1 - Float(pow(Double(beta1), Double(t)))
    let correction2 = 1 - Float(pow(Double(beta2), Double(t)))
    let b1 = Float8(repeating: beta1)
    let b2 = Float8(repeating: beta2)
    let one = Float8(repeating: 1)
    let l2 = Float8(repeating: decoupled ? 0 : weightDecay)
    let shrink = Float8(repeating: decoupled ? 1 - lr * weightDecay : 1)
    let stepSize = Float8(repeating: lr / correction1)
    let root2 = Float8(repeating: 1 / correction2.squareRoot())
    let eps = Float8(repeating: epsilon)
    Parallel.forRanges(count, minimumChunk: 16384) { range in
      let o = range.lowerBound
      forEachVector(range.count) { i, l in
        var pv = load8(p + o + i, lanes: l)
        let gv = load8(g + o + i, lanes: l).plusProduct(l2, pv)
        let mv = b1 * load8(m + o + i, lanes: l) + (one - b1) * gv
        let vv = b2 * load8(v + o + i, lanes: l) + (one - b2) * gv * gv
        store8(mv, m + o + i, lanes: l)
        store8(vv, v + o + i, lanes: l)
        pv = pv * shrink
        let denominator = (vv.squareRoot() * root2) + eps
        store8(pv - stepSize * mv / denominator, p + o + i, lanes: l)
      }
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
