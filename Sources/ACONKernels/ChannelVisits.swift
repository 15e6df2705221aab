/// The order in which a reduction per channel visits the planes of an `[N, C, plane]` tensor.
///
/// Channel by channel, each channel's planes image after image, keeps a channel's sums in
/// registers from its first plane to its last. On small planes of many channels that order
/// steps a whole image ahead from one plane to the next: for `[128, 1024, 4, 4]` every plane is
/// 64 KB past the one before, every load touches another page, and the fused batch norm + ACON
/// backward spent three quarters of its time on its two loads (4.4-5.0 ms against 1.8 here).
/// Those layers visit a block of channels a few images at a time instead: each image's planes
/// of the block lie in one run, and the channels' sums wait in a small buffer from one group of
/// images to the next. Every order adds a channel's terms in the same sequence (image after
/// image, the group's sums carried over), so the results are the same bits in any order.
struct ChannelVisits {
  /// Channels per block: a run of about 16 KB per image.
  let blockChannels: Int
  /// Images per visit of a block; `Int.max` for all of them (channel by channel).
  let imagesPerGroup: Int

  /// Channel by channel, unless the planes are at most 64 floats and an image holds at least
  /// 8192 (32 KB): then blocks of channels, four images at a time. Measured on the fused
  /// backward kernel called alone, in one process alternating with the channel-by-channel
  /// order, with separate input, gradient and output buffers (Zen 5): `[128, 1024, 4, 4]`
  /// 4.4-5.0 -> 1.6-1.8 ms, `[128, 512, 4, 4]` 1.00 -> 0.76, `[32, 1024, 7, 7]` 1.3-1.6 ->
  /// 1.1-1.2; on `[128, 96, 4, 4]`, `[128, 192, 4, 4]` and `[128, 96, 7, 7]` the blocks ran
  /// 5-10% slower, and on 14x14 planes (`[32, 244, 14, 14]`) 5% slower. The batch size does
  /// not enter: a group of four images is as long whatever the batch.
  static func forLayer(channels: Int, plane: Int) -> ChannelVisits {
    if plane <= 64 && channels * plane >= 8192 {
      return ChannelVisits(blockChannels: max(1, 4096 / plane), imagesPerGroup: 4)
    }
    return ChannelVisits(blockChannels: 1, imagesPerGroup: Int.max)
  }

  /// Whether channels are visited in blocks (else channel by channel).
  var visitsBlocks: Bool { imagesPerGroup != Int.max }

  /// `range` in blocks of ``blockChannels`` channels.
  @inline(__always)
  func blocks(of range: Range<Int>) -> LazyMapSequence<StrideTo<Int>, Range<Int>> {
    let size = blockChannels
    return stride(from: range.lowerBound, to: range.upperBound, by: size).lazy.map {
      $0..<min(range.upperBound, $0 + size)
    }
  }

  /// `images` in groups of ``imagesPerGroup`` (one group for channel by channel).
  @inline(__always)
  func groups(of images: Range<Int>) -> LazyMapSequence<StrideTo<Int>, Range<Int>> {
    let size = max(1, min(imagesPerGroup, images.count))
    return stride(from: images.lowerBound, to: images.upperBound, by: size).lazy.map {
      $0..<min(images.upperBound, $0 + size)
    }
  }

  /// Calls `body(channel, images)` for every channel of `range` and group of `images`, in this
  /// order's sequence: for the passes that sum nothing (normalize, an input gradient from its
  /// sums), where the order changes the speed alone.
  @inline(__always)
  func forEach(
    channelsIn range: Range<Int>, images: Range<Int>, _ body: (Int, Range<Int>) -> Void
  ) {
    for block in blocks(of: range) {
      for group in groups(of: images) {
        for channel in block { body(channel, group) }
      }
    }
  }

  /// One worker's sums for a block of channels: `lanesPerChannel` vector sums per channel
  /// within a fold of images (``lanes``, zeroed by ``startFold(_:)``) and `totalsPerChannel`
  /// Float64 numbers per channel across the folds (``totals``, zeroed by ``startBlock(_:)``).
  /// On the heap: in a stack buffer, the loads of the sums sometimes waited on the stores of the
  /// layer's output (2x slower in 6 of 8 runs of `[128, 96, 4, 4]`, the stack's place within its
  /// page changing from run to run).
  struct Sums {
    let lanes: UnsafeMutablePointer<WideFloat>
    let totals: UnsafeMutablePointer<Double>
    let lanesPerChannel: Int
    let totalsPerChannel: Int

    init(_ visits: ChannelVisits, lanesPerChannel: Int, totalsPerChannel: Int) {
      (self.lanesPerChannel, self.totalsPerChannel) = (lanesPerChannel, totalsPerChannel)
      lanes = .allocate(capacity: lanesPerChannel * visits.blockChannels)
      totals = .allocate(capacity: totalsPerChannel * visits.blockChannels)
    }

    func startBlock(_ block: Range<Int>) {
      totals.initialize(repeating: 0, count: totalsPerChannel * block.count)
    }

    func startFold(_ block: Range<Int>) {
      lanes.initialize(repeating: WideFloat(repeating: 0), count: lanesPerChannel * block.count)
    }

    func free() {
      lanes.deallocate()
      totals.deallocate()
    }
  }
}
