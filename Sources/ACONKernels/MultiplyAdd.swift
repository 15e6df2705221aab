/// `self + a * b` for the kernels' loops: one fused multiply-add where the target has FMA, a
/// multiply and an add where it has not.
///
/// The standard library's `addingProduct` is always fused. Compiled for a target without FMA
/// (the x86-64 baseline, `ACON_TARGET_CPU=generic`), LLVM cannot emit the instruction and calls
/// libm's `fmaf` once per lane instead: the Fashion-MNIST step ran 3.3 s (0.26 s now; the AVX2
/// build's 0.17 s) with half of its samples in `fmaf`. `Package.swift` defines
/// `ACON_UNFUSED_MULTIPLY_ADD` for such targets. The results differ from the fused ones by
/// the rounding of the product, as results on different CPUs already do.
///
/// One extension per concrete type, each `@_transparent` (inlined before the optimiser sees it):
/// a build with FMA then compiles to the code `addingProduct` gave, function for function
/// (`objdump`). `@inline(__always)`, or one protocol extension the three types conform to,
/// changed how the optimiser inlined the loops around the calls (the depthwise forward doubled).
extension SIMD16 where Scalar == Float {
  /// `self + a * b`, fused where the target has FMA.
  @_transparent
  public func plusProduct(_ a: Self, _ b: Self) -> Self {
    #if ACON_UNFUSED_MULTIPLY_ADD
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}

extension SIMD8 where Scalar == Float {
  /// `self + a * b`, fused where the target has FMA.
  @_transparent
  public func plusProduct(_ a: Self, _ b: Self) -> Self {
    #if ACON_UNFUSED_MULTIPLY_ADD
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}

extension Float {
  /// `self + a * b`, fused where the target has FMA.
  @_transparent
  public func plusProduct(_ a: Float, _ b: Float) -> Float {
    #if ACON_UNFUSED_MULTIPLY_ADD
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}
