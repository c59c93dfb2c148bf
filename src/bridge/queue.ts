/**
 * The outgoing queue of one bridge: QoS 1/2 messages for the remote, in the order they were published locally,
 * each held until the remote acknowledged it. With `persistence true` it is a LevelDB of its own
 * (`<persistence_location>/bridges/<name>`), so that a remote outage, a restart or a SIGKILL loses nothing; with
 * `persistence false` it lives in memory only, as everything else then does. In a cluster (`cluster_redis`) it is a
 * Redis hash, `midge:bridge:<name>:queue` (seq -> message), so that the node that takes the bridge over (lease.ts)
 * reads what the previous owner held.
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

/** Where the entries are kept besides memory: read once at open, then written through. */
interface QueueStore {
  /** Every entry, oldest first. */
  load (): AsyncIterable<[number, Buffer]>
  put (seq: number, value: Buffer): Promise<void>
  del (seq: number): Promise<void>
  close (): Promise<void>
}

class LevelQueueStore implements QueueStore {
  constructor (private readonly db: ClassicLevel<string, Buffer>, private readonly sync: boolean) {}
  async * load (): AsyncIterable<[number, Buffer]> {
    for await (const [k, v] of this.db.iterator()) yield [parseInt(k, 16), v]
  }

  put (seq: number, value: Buffer): Promise<void> { return this.db.put(key(seq), value, { sync: this.sync }) }
  del (seq: number): Promise<void> { return this.db.del(key(seq), { sync: this.sync }) }
  close (): Promise<void> { return this.db.close() }
}

/**
 * One hash per bridge. Redis answers one connection's commands in order, so a delete never overtakes its put; the
 * connection is the cluster node's store connection, closed by the node.
 */
class RedisQueueStore implements QueueStore {
  constructor (private readonly redis: RedisClient, private readonly hash: string) {}
  async * load (): AsyncIterable<[number, Buffer]> {
    const all = await this.redis.hgetallBuffer(this.hash)
    // fixed-width hex: the string order is the numeric order
    for (const k of Object.keys(all).sort()) yield [parseInt(k, 16), all[k]!]
  }

  async put (seq: number, value: Buffer): Promise<void> { await this.redis.hset(this.hash, key(seq), value) }
  async del (seq: number): Promise<void> { await this.redis.hdel(this.hash, key(seq)) }
  async close (): Promise<void> {}
}

/** The Redis hash of a bridge's queue in a cluster (midge store and tests read it too). */
export function redisQueueKey (name: string): string {
  return `midge:bridge:${name}:queue`
}

export interface QueuedMessage {
  seq: number
  /** Topic on the remote (prefixes already applied). */
  topic: string
  payload: Buffer
  qos: 1 | 2
  retain: boolean
  /** True once the write to the store completed (always true in memory). */
  stored: boolean
  /** Handed to the remote at least once: sent again with DUP after a reconnect. */
  sent: boolean
}

const KEY_DIGITS = 16

function key (seq: number): string {
  return seq.toString(16).padStart(KEY_DIGITS, '0')
}

/** topic length (2) + topic + qos/retain (1) + payload */
function encode (m: QueuedMessage): Buffer {
  const topic = Buffer.from(m.topic, 'utf8')
  const head = Buffer.allocUnsafe(3)
  head.writeUInt16BE(topic.length, 0)
  head[2] = m.qos | (m.retain ? 4 : 0)
  return Buffer.concat([head, topic, m.payload])
}

function decode (seq: number, b: Buffer): QueuedMessage {
  const len = b.readUInt16BE(0)
  const flags = b[2]!
  return {
    seq,
    topic: b.toString('utf8', 3, 3 + len),
    payload: b.subarray(3 + len),
    qos: (flags & 3) as 1 | 2,
    retain: (flags & 4) !== 0,
    stored: true,
    sent: false
  }
}

export class BridgeQueue {
  /** Oldest first. Acknowledged entries leave from anywhere (a QoS 2 may finish after a later QoS 1). */
  private readonly entries: QueuedMessage[] = []
  private nextSeq = 1
  private constructor (private readonly store: QueueStore | undefined, readonly limit: number) {}

  static async open (opts: { name: string, location?: string, sync: boolean, limit: number }): Promise<BridgeQueue> {
    if (opts.location === undefined) return new BridgeQueue(undefined, opts.limit)
    const path = join(opts.location, 'bridges', opts.name)
    const Level = await loadClassicLevel()
    let db: ClassicLevel<string, Buffer>
    try {
      mkdirSync(path, { recursive: true })
      db = new Level<string, Buffer>(path, { valueEncoding: 'buffer' })
      await db.open()
    } catch (err) {
      const cause = (err as { cause?: Error }).cause
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
    for await (const [seq, v] of store.load()) {
      q.entries.push(decode(seq, v))
      q.nextSeq = seq + 1
    }
    return q
  }

  get length (): number {
    return this.entries.length
  }

  get full (): boolean {
    return this.entries.length >= this.limit
  }

  /** Appends a message; resolves once it is in the store. The caller checks `full` first. */
  push (m: { topic: string, payload: Buffer, qos: 1 | 2, retain: boolean }): Promise<void> {
    const entry: QueuedMessage = { ...m, seq: this.nextSeq++, stored: this.store === undefined, sent: false }
    this.entries.push(entry)
    if (this.store === undefined) return Promise.resolve()
    return this.store.put(entry.seq, encode(entry)).then(() => { entry.stored = true }, (err: unknown) => {
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

  /** The remote acknowledged it: gone from memory and from the store. */
  ack (entry: QueuedMessage): Promise<void> {
    const i = this.entries.indexOf(entry)
    if (i < 0) return Promise.resolve()
    this.entries.splice(i, 1)
    if (this.store === undefined) return Promise.resolve()
    return this.store.del(entry.seq)
  }

  async close (): Promise<void> {
    await this.store?.close()
  }
}
