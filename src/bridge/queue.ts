/**
 * The outgoing queue of one bridge: QoS 1/2 messages for the remote, in the order they were published locally,
 * each held until the remote acknowledged it. With `persistence true` it is a LevelDB of its own
 * (`<persistence_location>/bridges/<name>`), so that a remote outage, a restart or a SIGKILL loses nothing; with
 * `persistence false` it lives in memory only, as everything else then does. In a cluster (`cluster_redis`) it is a
 * Redis hash, `midge:bridge:<name>:queue`, so that the node that takes the bridge over (src/cluster/lease.ts) reads
 * what the previous holder held.
 *
 * Records, in both stores (one key space, so that the messages come first in key order):
 *   <seq, 16 hex digits>     the message: topic, QoS, retain, MQTT 5 properties, when it was queued, payload
 *   s<seq>                   how far it got: handed to the remote (and under which packet id), or PUBREC received
 * The second record is written when the message is first sent and when its PUBREC arrives, without holding the
 * send back: after a crash, a message whose record had been written is sent again with DUP=1 and its packet id (or,
 * past PUBREC, only its PUBREL is sent again); one whose record had not is sent again as if new.
 *
 * Every entry is also kept in memory (the bound, `bridge_max_queued_messages`, caps that); the store is only read
 * at start. An entry is sent only once its write completed: LevelDB completes concurrent operations in any order,
 * and a delete that overtook its put would bring an acknowledged message back after a restart.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { ClassicLevel } from 'classic-level'
import { loadClassicLevel } from '../persistence/level.js'
import type { RedisClient } from '../cluster/redis.js'
import { BrokerError } from '../errors.js'

/** The MQTT 5 properties a bridge carries from one broker to the other (not topic aliases or subscription ids). */
export interface BridgeProperties {
  payloadFormatIndicator?: boolean
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  userProperties?: Record<string, string | string[]>
}

export interface QueuedMessage {
  seq: number
  /** Topic on the remote (prefixes already applied). */
  topic: string
  payload: Buffer
  qos: 1 | 2
  retain: boolean
  /** When it was queued (ms since the epoch). */
  queuedAt: number
  properties?: BridgeProperties
  /** When its MQTT 5 Message Expiry Interval runs out (ms since the epoch): time spent queued or stopped counts. */
  expiresAt?: number
  /** True once the write to the store completed (always true in memory). */
  stored: boolean
  /** Handed to the remote at least once: sent again with DUP=1 and the same packet id. */
  sent: boolean
  /** The packet id it was sent with. */
  packetId?: number
  /** QoS 2: the remote answered PUBREC; only the PUBREL is sent again. */
  released: boolean
}

export type NewMessage = Pick<QueuedMessage, 'topic' | 'payload' | 'qos' | 'retain'> & Partial<Pick<QueuedMessage, 'properties' | 'expiresAt'>>

const KEY_DIGITS = 16
const STATE_PREFIX = 's'
/** First byte of a message record in this format; the first format began with the topic length's high byte. */
const FORMAT_2 = 0xff
const STATE_SENT = 1
const STATE_RELEASED = 2

function key (seq: number): string {
  return seq.toString(16).padStart(KEY_DIGITS, '0')
}

function stateKey (seq: number): string {
  return STATE_PREFIX + key(seq)
}

/** FORMAT_2, JSON head length (4), JSON head, payload. */
function encode (m: QueuedMessage): Buffer {
  const p = m.properties
  const props = p === undefined
    ? undefined
    : { ...p, ...(p.correlationData !== undefined ? { correlationData: p.correlationData.toString('base64') } : {}) }
  const head = Buffer.from(JSON.stringify({ t: m.topic, q: m.qos, r: m.retain, at: m.queuedAt, p: props, x: m.expiresAt }))
  const pre = Buffer.allocUnsafe(5)
  pre[0] = FORMAT_2
  pre.writeUInt32BE(head.length, 1)
  return Buffer.concat([pre, head, m.payload])
}

function decode (seq: number, b: Buffer): QueuedMessage {
  if (b[0] !== FORMAT_2) {
    // the first format: topic length (2), qos/retain (1), topic, payload
    const len = b.readUInt16BE(0)
    const flags = b[2]!
    return { seq, topic: b.toString('utf8', 3, 3 + len), payload: b.subarray(3 + len), qos: (flags & 3) as 1 | 2, retain: (flags & 4) !== 0, queuedAt: Date.now(), stored: true, sent: false, released: false }
  }
  const n = b.readUInt32BE(1)
  const h = JSON.parse(b.toString('utf8', 5, 5 + n)) as { t: string, q: 1 | 2, r: boolean, at: number, p?: BridgeProperties & { correlationData?: string }, x?: number }
  const m: QueuedMessage = { seq, topic: h.t, payload: b.subarray(5 + n), qos: h.q, retain: h.r, queuedAt: h.at, stored: true, sent: false, released: false }
  if (h.p !== undefined) {
    const { correlationData, ...rest } = h.p
    m.properties = { ...rest, ...(correlationData !== undefined ? { correlationData: Buffer.from(correlationData, 'base64') } : {}) }
  }
  if (h.x !== undefined) m.expiresAt = h.x
  return m
}

function encodeState (m: QueuedMessage): Buffer {
  const b = Buffer.allocUnsafe(3)
  b[0] = m.released ? STATE_RELEASED : STATE_SENT
  b.writeUInt16BE(m.packetId ?? 0, 1)
  return b
}

/** Where the entries are kept besides memory: read once at open, then written through. */
interface QueueStore {
  /** Every record, in key order. */
  load (): AsyncIterable<[string, Buffer]>
  put (key: string, value: Buffer): Promise<void>
  del (keys: string[]): Promise<void>
  close (): Promise<void>
}

class LevelQueueStore implements QueueStore {
  constructor (private readonly db: ClassicLevel<string, Buffer>, private readonly sync: boolean) {}
  load (): AsyncIterable<[string, Buffer]> { return this.db.iterator() }
  put (k: string, value: Buffer): Promise<void> { return this.db.put(k, value, { sync: this.sync }) }
  del (keys: string[]): Promise<void> { return this.db.batch(keys.map(k => ({ type: 'del' as const, key: k })), { sync: this.sync }) }
  close (): Promise<void> { return this.db.close() }
}

/**
 * One hash per bridge. Redis answers one connection's commands in order, so a delete never overtakes its put; the
 * connection is the cluster node's store connection, closed by the node.
 */
class RedisQueueStore implements QueueStore {
  constructor (private readonly redis: RedisClient, private readonly hash: string) {}
  async * load (): AsyncIterable<[string, Buffer]> {
    const all = await this.redis.hgetallBuffer(this.hash)
    for (const k of Object.keys(all).sort()) yield [k, all[k]!]
  }

  async put (k: string, value: Buffer): Promise<void> { await this.redis.hset(this.hash, k, value) }
  async del (keys: string[]): Promise<void> { await this.redis.hdel(this.hash, ...keys) }
  async close (): Promise<void> {}
}

/** The Redis hash of a bridge's queue in a cluster. */
export function redisQueueKey (name: string): string {
  return `midge:bridge:${name}:queue`
}

/** The LevelDB directory of a bridge's queue. */
export function levelQueuePath (location: string, name: string): string {
  return join(location, 'bridges', name)
}

/** What `midge store bridges` shows of a queue: depth, oldest message, and the records it holds. */
export interface QueueSummary {
  depth: number
  oldest?: { topic: string, queuedAt: number }
  /** Messages handed to the remote, not yet acknowledged. */
  sent: number
}

export class BridgeQueue {
  /** Oldest first. Acknowledged entries leave from anywhere (a QoS 2 may finish after a later QoS 1). */
  private readonly entries: QueuedMessage[] = []
  private nextSeq = 1
  private constructor (private readonly store: QueueStore | undefined, readonly limit: number) {}

  static async open (opts: { name: string, location?: string, sync: boolean, limit: number, createIfMissing?: boolean }): Promise<BridgeQueue> {
    if (opts.location === undefined) return new BridgeQueue(undefined, opts.limit)
    const path = levelQueuePath(opts.location, opts.name)
    const Level = await loadClassicLevel()
    let db: ClassicLevel<string, Buffer>
    try {
      if (opts.createIfMissing !== false) mkdirSync(path, { recursive: true })
      db = new Level<string, Buffer>(path, { valueEncoding: 'buffer', createIfMissing: opts.createIfMissing !== false })
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string, message?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new BrokerError('STORE_LOCKED', `Error: the queue of bridge ${opts.name} (${path}) is locked: stop the Midge using it first.`, { cause: err })
      throw new BrokerError('STORE_OPEN', `Error: cannot open the queue of bridge ${opts.name} (${path}): ${cause?.message ?? (err as Error).message}.`, { cause: err })
    }
    return BridgeQueue.load(new LevelQueueStore(db, opts.sync), opts.limit)
  }

  /** The queue of a bridge in a cluster: read by whichever node holds the bridge's lease. */
  static async openRedis (opts: { name: string, redis: RedisClient, limit: number }): Promise<BridgeQueue> {
    return BridgeQueue.load(new RedisQueueStore(opts.redis, redisQueueKey(opts.name)), opts.limit)
  }

  private static async load (store: QueueStore, limit: number): Promise<BridgeQueue> {
    const q = new BridgeQueue(store, limit)
    const bySeq = new Map<number, QueuedMessage>()
    const orphans: string[] = []
    for await (const [k, v] of store.load()) {
      if (k.startsWith(STATE_PREFIX)) {
        const m = bySeq.get(parseInt(k.slice(STATE_PREFIX.length), 16))
        // the state of a message already deleted (its write landed after the delete)
        if (m === undefined) { orphans.push(k); continue }
        m.sent = true
        m.released = v[0] === STATE_RELEASED
        m.packetId = v.readUInt16BE(1)
        continue
      }
      const seq = parseInt(k, 16)
      const m = decode(seq, v)
      bySeq.set(seq, m)
      q.entries.push(m)
      q.nextSeq = seq + 1
    }
    if (orphans.length > 0) await store.del(orphans)
    return q
  }

  get length (): number {
    return this.entries.length
  }

  get full (): boolean {
    return this.entries.length >= this.limit
  }

  /** Depth, oldest message and how many were sent, for `midge store bridges`. */
  summary (): QueueSummary {
    const first = this.entries[0]
    return { depth: this.entries.length, sent: this.entries.filter(e => e.sent).length, ...(first ? { oldest: { topic: first.topic, queuedAt: first.queuedAt } } : {}) }
  }

  /** Appends a message; resolves once it is in the store. The caller checks `full` first. */
  push (m: NewMessage): Promise<void> {
    const entry: QueuedMessage = { ...m, queuedAt: Date.now(), seq: this.nextSeq++, stored: this.store === undefined, sent: false, released: false }
    this.entries.push(entry)
    if (this.store === undefined) return Promise.resolve()
    return this.store.put(key(entry.seq), encode(entry)).then(() => { entry.stored = true }, (err: unknown) => {
      // an entry that is never stored would hold back every later one (ready() stops at it); the publish fails instead
      const i = this.entries.indexOf(entry)
      if (i >= 0) this.entries.splice(i, 1)
      throw err
    })
  }

  /** Entries in order, up to the first one not yet stored (sending further would break the order). */
  * ready (): Generator<QueuedMessage> {
    for (const e of this.entries) {
      if (!e.stored) return
      yield e
    }
  }

  /** Packet ids held by entries (sent, not yet acknowledged): not to be given to anything else. */
  packetIds (): Set<number> {
    const ids = new Set<number>()
    for (const e of this.entries) if (e.packetId !== undefined) ids.add(e.packetId)
    return ids
  }

  /** Sent (with `packetId`), or PUBREC received: recorded, for DUP and PUBREL after a restart. */
  mark (entry: QueuedMessage, change: { packetId: number } | { released: true }): Promise<void> {
    if ('packetId' in change) { entry.sent = true; entry.packetId = change.packetId } else entry.released = true
    if (this.store === undefined || !this.entries.includes(entry)) return Promise.resolve()
    return this.store.put(stateKey(entry.seq), encodeState(entry))
  }

  /** The remote acknowledged it (or it expired): gone from memory and from the store. */
  ack (entry: QueuedMessage): Promise<void> {
    const i = this.entries.indexOf(entry)
    if (i < 0) return Promise.resolve()
    this.entries.splice(i, 1)
    if (this.store === undefined) return Promise.resolve()
    return this.store.del(entry.sent ? [key(entry.seq), stateKey(entry.seq)] : [key(entry.seq)])
  }

  /**
   * Drops every stored message (`midge store bridges --drop`, local_cleansession). One whose write is still under way
   * stays: its write could land after the delete and bring it back after a restart.
   */
  async clear (): Promise<number> {
    const gone = this.entries.filter(e => e.stored)
    const kept = this.entries.filter(e => !e.stored)
    this.entries.splice(0, this.entries.length, ...kept)
    if (this.store !== undefined && gone.length > 0) await this.store.del(gone.flatMap(e => [key(e.seq), stateKey(e.seq)]))
    return gone.length
  }

  async close (): Promise<void> {
    await this.store?.close()
  }
}
