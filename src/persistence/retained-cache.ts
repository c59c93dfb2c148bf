/**
 * The LevelDB store's retained messages, kept in memory too, as mosquitto keeps them: a new subscription reads no
 * LevelDB. aedes-persistence-level answers `createRetainedStreamCombi` by iterating every `retained:` key of the
 * store and decoding each value with msgpack, for every SUBSCRIBE: a profile of 10,000 retained messages sent to a
 * new `#` subscriber had 30% of the broker's busy time in that decoding and 10% in the iterator.
 *
 * The store on disk is unchanged: the same keys and the same msgpack values, written through the same handle (and
 * so through the group commit) as aedes-persistence-level writes them. What a subscriber is sent is unchanged too:
 * each message is the msgpack round trip of the stored packet (what decoding the LevelDB value gives), in the
 * store's key order (topics by UTF-8 bytes), pattern after pattern, matched with the store's own qlobber options.
 *
 * A write is applied here when it is made, as aedes-persistence's memory store does (a subscription that arrives
 * while the LevelDB write is in flight already gets the new message); if LevelDB refuses it, the topic is read back
 * from LevelDB so that memory never holds what the store does not.
 */
import { Readable } from 'node:stream'
import type { ClassicLevel } from 'classic-level'
import { QLOBBER_OPTIONS, QlobberTrue, RETAINED, msgpack, range } from './level-layout.js'

const RANGE = range(RETAINED)
const BUFFER = { valueEncoding: 'buffer' } as const

/** A retained message as the store gives it back: the decoded msgpack of the packet aedes stored. */
export interface StoredRetained { topic: string, payload: Buffer, [field: string]: unknown }

interface RetainedStore {
  storeRetained (packet: { topic: string, payload: Buffer }, cb?: (err: Error | null) => void): Promise<void> | undefined
  createRetainedStreamCombi (patterns: string[]): Readable
  createRetainedStream (pattern: string): Readable
}

interface Entry {
  /** the msgpack value as written, until the message is first read */
  blob: Buffer | undefined
  decoded: StoredRetained | undefined
}

/** UTF-8 byte order (LevelDB's key order) is code point order; JS compares UTF-16 code units. */
function byCodePoint (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x === y) continue
    // surrogates (U+D800-DFFF, code points above U+FFFF) sort after U+E000-FFFF
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000
    }
    return x - y
  }
  return a.length - b.length
}

export class RetainedCache {
  private readonly entries = new Map<string, Entry>()
  /** topics in key order; rebuilt on the first read after a topic was added or removed */
  private sorted: string[] | undefined = []
  private wide = false

  constructor (private readonly db: ClassicLevel<string, Buffer>) {}

  /** Reads every retained message of the store (at start, before aedes uses it). */
  async load (): Promise<void> {
    for await (const [key, blob] of this.db.iterator({ ...RANGE, ...BUFFER })) this.set(key.slice(RETAINED.length), blob)
  }

  get size (): number { return this.entries.size }

  /** aedes-persistence-level's storeRetained, writing the same key and value, answered from memory afterwards. */
  async store (packet: { topic: string, payload: Buffer }): Promise<void> {
    const key = RETAINED + packet.topic
    try {
      if (packet.payload.length === 0) {
        this.delete(packet.topic)
        await this.db.del(key)
      } else {
        const blob = msgpack.encode(packet)
        this.set(packet.topic, blob)
        await this.db.put(key, blob, BUFFER)
      }
    } catch (err) {
      await this.reread(packet.topic)
      throw err
    }
  }

  /** The retained messages matching each pattern, pattern after pattern, each in key order (a snapshot). */
  matching (patterns: string[]): StoredRetained[] {
    const out: StoredRetained[] = []
    if (this.entries.size === 0) return out
    const topics = this.inOrder()
    for (const pattern of patterns) {
      const q = new QlobberTrue(QLOBBER_OPTIONS)
      q.add(pattern)
      for (const topic of topics) {
        if (q.test(topic)) out.push(this.read(this.entries.get(topic)!))
      }
    }
    return out
  }

  private read (e: Entry): StoredRetained {
    if (e.decoded === undefined) {
      e.decoded = msgpack.decode(e.blob!) as StoredRetained
      e.blob = undefined
    }
    return e.decoded
  }

  private set (topic: string, blob: Buffer): void {
    const e = this.entries.get(topic)
    if (e !== undefined) {
      e.blob = blob
      e.decoded = undefined
      return
    }
    this.entries.set(topic, { blob, decoded: undefined })
    this.sorted = undefined
    if (!this.wide && /[\ud800-\uffff]/.test(topic)) this.wide = true
  }

  private delete (topic: string): void {
    if (this.entries.delete(topic)) this.sorted = undefined
  }

  private inOrder (): string[] {
    if (this.sorted === undefined) {
      const topics = [...this.entries.keys()]
      this.sorted = this.wide ? topics.sort(byCodePoint) : topics.sort()
    }
    return this.sorted
  }

  /** After a refused write: whatever LevelDB holds for the topic. */
  private async reread (topic: string): Promise<void> {
    // unreadable counts as absent: memory then holds less than the store, never more
    const blob = await this.db.get(RETAINED + topic, BUFFER).catch(() => undefined)
    if (blob === undefined) this.delete(topic)
    else this.set(topic, blob)
  }
}

/**
 * Serves the store's retained messages from memory: `storeRetained`, `createRetainedStreamCombi` and
 * `createRetainedStream` are replaced on the instance (aedes-persistence-level's callback layer, which wraps each
 * stream of its async store in a second `Readable.from`); the other methods stay the store's own.
 */
export async function keepRetainedInMemory<T> (store: T, db: ClassicLevel<string, Buffer>): Promise<T> {
  const cache = new RetainedCache(db)
  await cache.load()
  const s = store as T & RetainedStore
  // the store's callback form too (aedes 2 uses the promise)
  s.storeRetained = (packet, cb) => {
    const done = cache.store(packet)
    if (cb === undefined) return done
    done.then(() => cb(null), cb)
    return undefined
  }
  s.createRetainedStreamCombi = patterns => Readable.from(cache.matching(patterns))
  s.createRetainedStream = pattern => Readable.from(cache.matching([pattern]))
  return store
}
