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

/** Not a value msgpack gives back as it was: such a packet is not kept decoded, and its reads decode it. */
const UNLIKE = Symbol('unlike')

/** Classes msgpack-lite writes as extension types or special values (by constructor name, as it looks them up). */
const SPECIAL = new Set(['Error', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError',
  'RegExp', 'Boolean', 'String', 'Date', 'Number', 'ArrayBuffer', 'DataView', 'Map', 'Set', 'Uint64BE', 'Int64BE'])

/**
 * What `msgpack.decode(msgpack.encode(v))` gives for the values a stored packet holds: own enumerable string keys,
 * `undefined` and functions as `null` (aedes' `writeCallback`), Buffers as Buffers (shared here: a payload is never
 * written to), objects (a Packet, v5 properties) and arrays copied. What msgpack-lite writes in its own way (a Date,
 * a typed array, an Error, a Map) is UNLIKE.
 */
function likeDecoded (v: unknown): unknown {
  if (v === undefined || v === null || typeof v === 'function') return null
  if (typeof v === 'string' || typeof v === 'boolean') return v
  // msgpack writes -0 as the integer 0
  if (typeof v === 'number') return v === 0 ? 0 : Number.isSafeInteger(v) || !Number.isInteger(v) ? v : UNLIKE
  if (typeof v !== 'object') return UNLIKE
  if (Buffer.isBuffer(v)) return v
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) {
      const d = likeDecoded(v[i])
      if (d === UNLIKE) return UNLIKE
      out[i] = d
    }
    return out
  }
  if (ArrayBuffer.isView(v)) return UNLIKE
  const c = (v as { constructor?: { name?: unknown } }).constructor
  if (c !== undefined && c !== Object && (typeof c !== 'function' || SPECIAL.has(String(c.name)))) return UNLIKE
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) {
    const d = likeDecoded((v as Record<string, unknown>)[k])
    if (d === UNLIKE) return UNLIKE
    out[k] = d
  }
  return out
}

export interface PacketCodecStats {
  /** Values decoded from their bytes, and reads answered with the decoded form kept at encoding. */
  decoded: number
  reused: number
}

export class PacketCodec {
  private readonly decodedOf = new WeakMap<Buffer, unknown>()
  readonly stats: PacketCodecStats = { decoded: 0, reused: 0 }

  /** The bytes the store would write for `value`; their decoded form is a copy taken now, as the bytes are. */
  encode (value: object): Buffer {
    const bytes = msgpack.encode(value)
    const decoded = likeDecoded(value)
    if (decoded !== UNLIKE) this.decodedOf.set(bytes, decoded)
    return bytes
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

/** For tests: the decoded form kept for `value`, or undefined where reads decode the bytes. */
export function keptDecoded (value: unknown): unknown {
  const d = likeDecoded(value)
  return d === UNLIKE ? undefined : d
}
