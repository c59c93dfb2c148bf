/**
 * Write-ahead journal for QoS 1 publishes.
 *
 * aedes 1.2 writes PUBACK *before* it stores a QoS 1 message in the offline queues of persistent sessions and in
 * the retained store (lib/handlers/publish.js: `write(PubAck)` then `broker.publish`), so a crash right after the
 * PUBACK loses a message the publisher was told is safe. QoS 2 is stored before PUBREC and needs nothing.
 *
 * Midge journals the publish in `authorizePublish`, which aedes awaits before the PUBACK, into the same LevelDB
 * (keys `midge-journal:<seq>`), and deletes the entry in the `published` hook, which aedes calls once the retained
 * store and the offline queues are written. At start-up, before any listener opens, every entry left is published
 * again. Writes are batched: every publish that arrives while a batch is being written goes into the next one, and
 * the callers are released in arrival order, which keeps the order of one publisher's messages.
 *
 * Each journalled packet has its aedes `brokerId`/`brokerCounter` already (durability.ts assigns them in arrival
 * order; aedes-packet keeps them), and the entry records them: a replay then writes the very same offline-queue keys (`outgoing:<client>:<brokerId>:<counter>`),
 * so a message whose queue write did complete is overwritten, not duplicated, and one that did not lands in its
 * original place in the queue. Counters assigned early reach aedes out of order with its own: delivery.ts replaces
 * aedes' counter-based duplicate filter, which would drop them.
 */
import type { ClassicLevel } from 'classic-level'
import type { Logger } from '../logging/logger.js'

const PREFIX = 'midge-journal:'
const RANGE = { gte: PREFIX, lt: 'midge-journal;' }

export interface JournalPacket {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  brokerId?: string
  brokerCounter?: number
  /** MQTT 5 properties, kept byte for byte (Correlation Data is binary). */
  properties?: Record<string, unknown>
  /** When a v5 Message Expiry Interval runs out (ms since the epoch): time spent stopped counts. */
  messageExpiry?: number
}

export interface JournalEntry extends JournalPacket {
  key: string
  brokerId: string
  brokerCounter: number
}

interface Pending { key: string, value: Buffer, resolve: () => void, reject: (err: Error) => void }

/** JSON cannot hold a Buffer: binary property values travel as `{ $b: base64 }`. */
function toJson (_key: string, v: unknown): unknown {
  if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
    return { $b: Buffer.from((v as { data: number[] }).data).toString('base64') }
  }
  return v
}
function fromJson (_key: string, v: unknown): unknown {
  if (v !== null && typeof v === 'object' && typeof (v as { $b?: unknown }).$b === 'string') return Buffer.from((v as { $b: string }).$b, 'base64')
  return v
}

/** One journal value: a length-prefixed JSON head, then the payload bytes (shared with the Redis journal). */
export function encode (p: Omit<JournalEntry, 'key'>): Buffer {
  const h = { t: p.topic, q: p.qos, r: p.retain, b: p.brokerId, c: p.brokerCounter, p: p.properties, x: p.messageExpiry }
  // only properties can hold a Buffer: without them JSON.stringify runs without the replacer, on its fast path
  const head = p.properties === undefined ? JSON.stringify(h) : JSON.stringify(h, toJson)
  const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload as unknown as string)
  const n = Buffer.byteLength(head)
  // one allocation for the three parts
  const out = Buffer.allocUnsafe(4 + n + payload.length)
  out.writeUInt32BE(n, 0)
  out.write(head, 4)
  payload.copy(out, 4 + n)
  return out
}

export function decode (key: string, v: Buffer): JournalEntry {
  const n = v.readUInt32BE(0)
  const h = JSON.parse(v.subarray(4, 4 + n).toString(), fromJson) as { t: string, q: 0 | 1 | 2, r: boolean, b: string, c: number, p?: Record<string, unknown>, x?: number }
  const e: JournalEntry = { key, topic: h.t, qos: h.q, retain: h.r, brokerId: h.b, brokerCounter: h.c, payload: Buffer.from(v.subarray(4 + n)) }
  if (h.p !== undefined) e.properties = h.p
  if (h.x !== undefined) e.messageExpiry = h.x
  return e
}

export class PublishJournal {
  private seq = 0
  private readonly keys = new WeakMap<object, string>()
  private puts: Pending[] = []
  private dels: string[] = []
  private writing: Promise<void> | undefined
  /** Journal writes done (tests, metrics). */
  written = 0
  /** Entries recorded whose publish has not completed yet, and who waits for that count to reach 0. */
  private open = 0
  private onSettled: (() => void) | undefined

  constructor (private readonly db: ClassicLevel<string, Buffer>, private readonly log: Logger) {}

  /** Reads the entries left by the previous run, in journal order, and continues the sequence after them. */
  async pending (): Promise<JournalEntry[]> {
    const out: JournalEntry[] = []
    for await (const [k, v] of this.db.iterator(RANGE)) out.push(decode(k, v))
    const last = out[out.length - 1]
    if (last) this.seq = Number(last.key.slice(PREFIX.length))
    return out
  }

  /** Resolves once the packet is on disk. Its aedes brokerId/brokerCounter are already assigned (see the file comment). */
  record (packet: JournalPacket & object): Promise<void> {
    const key = `${PREFIX}${String(++this.seq).padStart(16, '0')}`
    this.keys.set(packet, key)
    this.open++
    // the fields the entry keeps, not a copy of the whole packet
    const value = encode({
      topic: packet.topic,
      payload: packet.payload,
      qos: packet.qos,
      retain: packet.retain,
      brokerId: packet.brokerId ?? '',
      brokerCounter: packet.brokerCounter ?? 0,
      properties: packet.properties,
      messageExpiry: packet.messageExpiry
    })
    return new Promise<void>((resolve, reject) => {
      this.puts.push({ key, value, resolve, reject })
      this.kick()
    })
  }

  /** The publish reached the retained store and every offline queue: its entry can go (batched, not awaited). */
  complete (packet: object): void {
    const key = this.keys.get(packet)
    if (key === undefined) return
    this.keys.delete(packet)
    if (--this.open === 0) this.onSettled?.()
    this.dels.push(key)
    this.kick()
  }

  remove (key: string): void {
    this.dels.push(key)
    this.kick()
  }

  /**
   * Waits (at most `timeoutMs`) until every recorded publish has completed, so that a graceful stop does not leave
   * entries behind that the next start would publish again (duplicates, counted against queue limits twice).
   */
  settled (timeoutMs: number): Promise<void> {
    if (this.open <= 0) return Promise.resolve()
    return new Promise(resolve => {
      const t = setTimeout(done, timeoutMs)
      function done (): void { clearTimeout(t); resolve() }
      this.onSettled = done
    })
  }

  /** Waits for every queued write. */
  async flush (): Promise<void> {
    while (this.writing) await this.writing
  }

  private kick (): void {
    if (this.writing) return
    // one turn of the event loop gathers every publish of the socket chunk being parsed into one batch
    this.writing = new Promise<void>(resolve => setImmediate(resolve)).then(() => this.loop())
  }

  private async loop (): Promise<void> {
    while (this.puts.length > 0 || this.dels.length > 0) {
      const puts = this.puts
      const dels = this.dels
      this.puts = []
      this.dels = []
      const ops = [
        ...puts.map(p => ({ type: 'put' as const, key: p.key, value: p.value })),
        ...dels.map(key => ({ type: 'del' as const, key }))
      ]
      try {
        await this.db.batch(ops)
        this.written += puts.length
        for (const p of puts) p.resolve()
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'journal write failed: publishes refused')
        for (const p of puts) p.reject(err as Error)
      }
    }
    this.writing = undefined
  }
}
