/**
 * The LevelDB store's value encoding (msgpack, level-layout.ts) for the values Midge writes in its place, with the
 * decoded form of each value kept beside the bytes, so that reading back what was just written costs no decoding.
 *
 * Every QoS 1/2 message to a persistent session is written and read back twice by aedes-persistence-level: the
 * queued message is read by `outgoingUpdate` (for the message id it had), the message under its id by
 * `outgoingClearMessageId` on PUBACK/PUBCOMP (for its queue key, and as the answer). The group commit answers those
 * gets with the very Buffer that was written (group-commit.ts), so the decoded form is found by that Buffer's
 * identity: bytes another writer put, or that come from LevelDB itself, are other Buffers and are decoded as before.
 * Profiled (`node --cpu-prof`, durable-q1-p10): msgpack decoding was 12.7% of the broker's busy time.
 */
import { msgpack } from './level-layout.js'
import { MsgpackWriter } from './msgpack-writer.js'

export interface PacketCodecStats {
  /** Values decoded from their bytes, and reads answered with the decoded form kept at encoding. */
  decoded: number
  reused: number
}

export class PacketCodec {
  private readonly decodedOf = new WeakMap<Buffer, unknown>()
  private readonly writer = new MsgpackWriter()
  readonly stats: PacketCodecStats = { decoded: 0, reused: 0 }

  /** The bytes the store would write for `value` (msgpack-writer.ts); their decoded form is taken now, as the bytes are. */
  encode (value: object): Buffer {
    const w = this.writer.write(value)
    if (w === undefined) return msgpack.encode(value)
    this.decodedOf.set(w.bytes, w.decoded)
    return w.bytes
  }

  /**
   * What `msgpack.decode(bytes)` gives. Bytes this codec encoded give the same object on every read: callers read it,
   * and aedes hands the answer of `outgoingClearMessageId` to its 'ack' event, as the memory store hands its own.
   */
  decode (bytes: Buffer): unknown {
    const kept = this.decodedOf.get(bytes)
    if (kept !== undefined) {
      this.stats.reused++
      return kept
    }
    this.stats.decoded++
    return msgpack.decode(bytes)
  }
}
