/**
 * MQTT fixed headers [MQTT-2.2]: a type byte, then the remaining length as a Variable Byte Integer of 1 to 4 bytes.
 * The one place Midge finds packet boundaries in a byte stream: the inbound framer (broker/inbound-framer.ts) on
 * every read, and the count of packets sent (sys/wire.ts). Bodies are skipped by arithmetic, never copied, and
 * nothing is allocated per packet.
 */

/** What `FrameScanner.scan` stopped at. */
export type FrameEvent = typeof FRAME_MORE | typeof FRAME_START | typeof FRAME_HEADER | typeof FRAME_END | typeof FRAME_MALFORMED
/** The buffer ended inside a packet (or exactly between two): the next chunk goes on from here. */
export const FRAME_MORE = 0
/** A packet's type byte was passed: `type` and `flags` are known, `headerLength` is 1. */
export const FRAME_START = 1
/** A packet's fixed header is complete: `remaining` and `headerLength` are known; the body follows. */
export const FRAME_HEADER = 2
/** A packet's last byte was passed (for a packet without a body, right after its header). */
export const FRAME_END = 3
/** A remaining length with a fifth byte [MQTT-1.5.5]: not MQTT; the scanner stops there for good. */
export const FRAME_MALFORMED = 4

/** Largest remaining length a fixed header can carry (0xff 0xff 0xff 0x7f). */
export const MAX_REMAINING_LENGTH = 268_435_455

const IN_TYPE = 0
const IN_LENGTH = 1
const IN_BODY = 2
const BROKEN = 3

/**
 * Walks a byte stream packet by packet, chunk after chunk: a header or a body may be cut anywhere, and the scan goes
 * on with the next chunk where the last one stopped. Each `scan` call runs to the next event and leaves the
 * position after it in `at`; a caller loops until FRAME_MORE, then hands it the next chunk from offset 0.
 * A class, not closures: it is per-connection state, and the framer extends it to stay one object per connection.
 */
export class FrameScanner {
  /** The current packet's type (high nibble of its first byte) and flags (low nibble). */
  type = 0
  flags = 0
  /** Its remaining length: partial while the header is read, final from FRAME_HEADER on. */
  remaining = 0
  /** Its fixed header's bytes so far (2 to 5 once complete). */
  headerLength = 0
  /** Bytes of its body not yet passed. */
  left = 0
  /** Where the last `scan` stopped in the buffer it was given. */
  at = 0
  private state = IN_TYPE
  private multiplier = 1

  /** Back to the start of a packet, as for a new stream. */
  reset (): void {
    this.state = IN_TYPE
    this.type = 0
    this.flags = 0
    this.remaining = 0
    this.headerLength = 0
    this.left = 0
    this.at = 0
  }

  /** True while the current packet's body is being passed (and `left` counts what is still to come). */
  get inBody (): boolean { return this.state === IN_BODY }

  /** Scans `buf` from `from` to the next event. */
  scan (buf: Buffer, from: number): FrameEvent {
    const n = buf.length
    let i = from
    switch (this.state) {
      case IN_BODY: {
        const step = Math.min(this.left, n - i)
        this.left -= step
        this.at = i + step
        if (this.left > 0) return FRAME_MORE
        this.state = IN_TYPE
        return FRAME_END
      }
      case IN_TYPE: {
        this.at = i
        if (i >= n) return FRAME_MORE
        const byte = buf[i]!
        this.type = byte >> 4
        this.flags = byte & 0x0f
        this.remaining = 0
        this.multiplier = 1
        this.headerLength = 1
        this.state = IN_LENGTH
        this.at = i + 1
        return FRAME_START
      }
      case IN_LENGTH:
        while (i < n) {
          const byte = buf[i++]!
          this.remaining += (byte & 0x7f) * this.multiplier
          this.multiplier *= 128
          this.headerLength++
          if ((byte & 0x80) === 0) {
            this.state = IN_BODY
            this.left = this.remaining
            this.at = i
            return FRAME_HEADER
          }
          if (this.headerLength === 5) {
            this.state = BROKEN
            this.at = i
            return FRAME_MALFORMED
          }
        }
        this.at = i
        return FRAME_MORE
      default:
        this.at = from
        return FRAME_MALFORMED
    }
  }
}

/**
 * Where the packet that starts at `at` of `buf` ends (the offset after its last byte), or -1 while its fixed header
 * is not complete in `buf` (or is malformed). The packet is complete in `buf` when the result is from 0 to
 * `buf.length`. Stateless, for a look ahead that must not move a scanner.
 */
export function frameEnd (buf: Buffer, at: number): number {
  let remaining = 0
  let multiplier = 1
  const n = buf.length
  for (let i = at + 1; i < n && i <= at + 4; i++) {
    const byte = buf[i]!
    remaining += (byte & 0x7f) * multiplier
    if ((byte & 0x80) === 0) return i + 1 + remaining
    multiplier *= 128
  }
  return -1
}
