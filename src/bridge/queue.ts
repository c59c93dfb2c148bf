/**
 * The outgoing queue of one bridge: QoS 1/2 messages for the remote, in the order they were published locally,
 * each held until the remote acknowledged it. With `persistence true` it is a LevelDB of its own
 * (`<persistence_location>/bridges/<name>`), so that a remote outage, a restart or a SIGKILL loses nothing; with
 * `persistence false` it lives in memory only, as everything else then does.
 *
 * Every entry is also kept in memory (the bound, `bridge_max_queued_messages`, caps that); the store is only read
 * at start. An entry is sent only once its write completed: LevelDB completes concurrent operations in any order,
 * and a delete that overtook its put would bring an acknowledged message back after a restart.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { ClassicLevel } from 'classic-level'
import { loadClassicLevel } from '../persistence/level.js'
import { BrokerError } from '../errors.js'

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
  private constructor (private readonly db: ClassicLevel<string, Buffer> | undefined, private readonly sync: boolean, readonly limit: number) {}

  static async open (opts: { name: string, location?: string, sync: boolean, limit: number }): Promise<BridgeQueue> {
    if (opts.location === undefined) return new BridgeQueue(undefined, false, opts.limit)
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
    const q = new BridgeQueue(db, opts.sync, opts.limit)
    for await (const [k, v] of db.iterator()) {
      const seq = parseInt(k, 16)
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
    const entry: QueuedMessage = { ...m, seq: this.nextSeq++, stored: this.db === undefined, sent: false }
    this.entries.push(entry)
    if (this.db === undefined) return Promise.resolve()
    return this.db.put(key(entry.seq), encode(entry), { sync: this.sync }).then(() => { entry.stored = true }, (err: unknown) => {
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
    if (this.db === undefined) return Promise.resolve()
    return this.db.del(key(entry.seq), { sync: this.sync })
  }

  async close (): Promise<void> {
    await this.db?.close()
  }
}
