import ACONTensor
import Testing

@Suite("Scratch arena")
struct ScratchArenaTests {
  @Test func oneBufferGrownToTheLargestRequest() {
    let arena = ScratchArena()
    let first = arena.withScratch(1000) { $0 }
    #expect(arena.capacity == 1000)
    // A smaller request reuses the buffer; a larger one replaces it, and later smaller ones
    // reuse that.
    #expect(arena.withScratch(10) { $0 } == first)
    let grown = arena.withScratch(5000) { p in
      (p + 4999).pointee = 1  // all of it is writable
      return p
    }
    #expect(arena.capacity == 5000)
    #expect(arena.withScratch(1000) { $0 } == grown)
    #expect(arena.capacity == 5000)
  }

  @Test func aRequestInsideAnotherTakesAPooledBuffer() {
    let arena = ScratchArena()
    // A size no other test asks the pool for.
    let count = 7919
    let before = BufferPool.shared.cachedBufferCount(floats: count)
    arena.withScratch(100) { outer in
      arena.withScratch(count) { inner in
        #expect(inner != outer)
        inner.update(repeating: 2, count: count)
      }
      // The outer buffer is still the caller's.
      outer.update(repeating: 1, count: 100)
    }
    #expect(arena.capacity == 100)
    #expect(BufferPool.shared.cachedBufferCount(floats: count) == before + 1)
  }

  @Test func nothingAskedNothingGiven() {
    #expect(ScratchArena.withScratch(0) { $0 } == nil)
    #expect(ScratchArena.withScratch(3) { $0 } != nil)
  }
}
