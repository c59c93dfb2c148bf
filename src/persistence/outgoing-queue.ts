/**
 * aedes-persistence-level's outgoing queue (`outgoingEnqueue(Combi)`, `outgoingUpdate`, `outgoingClearMessageId`),
 * writing the same keys and values, each packet encoded once and nothing decoded that was just written.
 *
 * Per QoS 1/2 message to a persistent session the store (a) puts the message under its queue key, encoded once per
 * subscriber; (b) before it goes out (`outgoingUpdate`, aedes writes it once that resolves) reads the queued message
 * back for the id it had, deletes that id's key, then puts the message under its new id and again under its queue
 * key, each write awaited before the next (two or three group-commit batches in a row), each put encoding the
 * packet again; (c) on PUBACK/PUBCOMP reads the message back by its id, for its queue key and as the answer, and
 * deletes both keys. Here (a) encodes once for every subscriber, (b) is one batch after the same read with one
 * encoding for both puts, and the reads of (b) and (c) take the decoded form kept when the bytes were encoded
 * (packet-codec.ts). With the outgoing window (20 messages in flight per client) those round trips bound durable
 * QoS 1/2 throughput; profiled (`node --cpu-prof`, durable-q1-p10), msgpack decoding was 12.7% of the busy time.
 *
 * A PUBREL (QoS 2: the subscriber's PUBREC) takes the place of its message the same way, after one more read (the
 * message by its id, for its queue key): the store read both back and decoded them, then wrote three times in a row.
 * The store's state after each call is the one aedes-persistence-level leaves (unit test persistence-outgoing-update
 * compares them).
 */
import type { ClassicLevel } from 'classic-level'
import { outgoingIdKey, outgoingKey, queuedValue } from './level-layout.js'
import { noSuchPacket } from './no-such-packet.js'
import { PacketCodec } from './packet-codec.js'

const BUFFER = { valueEncoding: 'buffer' } as const

interface OutgoingPacket { cmd?: string, brokerId?: string, brokerCounter?: number, messageId?: number | null }
interface ClientLike { id: string }
interface Subscriber { clientId: string }
type Callback = (err: Error | null, client?: ClientLike, packet?: OutgoingPacket) => void
type Op = { type: 'put', key: string, value: Buffer } | { type: 'del', key: string }
interface OutgoingStore {
  outgoingEnqueue (sub: Subscriber, packet: OutgoingPacket): Promise<void>
  outgoingEnqueueCombi (subs: Subscriber[] | undefined, packet: OutgoingPacket): Promise<unknown>
  outgoingUpdate (client: ClientLike, packet: OutgoingPacket, cb?: Callback): Promise<void> | undefined
  outgoingClearMessageId (client: ClientLike, packet: { messageId?: number | null }): Promise<unknown>
}

/**
 * The group commit's last write of a key, if it still holds it (group-commit.ts `lastWrite`): what a `get` would
 * answer, known at once. Without it every read goes through `db.get`.
 */
export type Peek = (key: string) => { value: Buffer | undefined } | undefined

const NOTHING_KEPT: Peek = () => undefined

/**
 * Reads of what was just written are answered synchronously from the group commit, so that an update or a clear
 * costs no promise of its own before its batch: per QoS 1 message to a persistent session they were 4 KB of the
 * 26 KB the broker allocated (sampling heap profiler, durable-q1-p10).
 */
class OutgoingQueue {
  constructor (private readonly db: ClassicLevel<string, Buffer>, readonly codec: PacketCodec, private readonly peek: Peek = NOTHING_KEPT) {}

  enqueue (subs: Subscriber[], packet: OutgoingPacket): Promise<void> {
    try {
      const value = this.codec.encode(queuedValue(packet))
      const ops: Op[] = new Array(subs.length)
      for (let i = 0; i < subs.length; i++) ops[i] = { type: 'put', key: outgoingKey(subs[i]!.clientId, packet.brokerId, packet.brokerCounter), value }
      return this.db.batch(ops, BUFFER)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  update (client: ClientLike, packet: OutgoingPacket): Promise<void> {
    return packet.brokerId ? this.updateQueued(client, packet) : this.updatePubrel(client, packet)
  }

  /** aedes' PUBREL: the message is found by its id, and the PUBREL takes its broker id and counter, as the store does. */
  private async updatePubrel (client: ClientLike, packet: OutgoingPacket): Promise<void> {
    const blob = await this.afterRead(outgoingIdKey(client.id, packet.messageId), found => Promise.resolve(found))
    if (blob === undefined) throw noSuchPacket()
    const sent = this.codec.decode(blob) as OutgoingPacket
    packet.brokerId = sent.brokerId
    packet.brokerCounter = sent.brokerCounter
    return this.updateQueued(client, packet)
  }

  private updateQueued (client: ClientLike, packet: OutgoingPacket): Promise<void> {
    const prekey = outgoingKey(client.id, packet.brokerId, packet.brokerCounter)
    return this.afterRead(prekey, blob => this.replaceQueued(client, packet, prekey, blob))
  }

  /** The queued message under its new id, and again under its queue key; the id it had before is dropped. */
  private replaceQueued (client: ClientLike, packet: OutgoingPacket, prekey: string, blob: Buffer | undefined): Promise<void> {
    // not queued for this client: MidgeStore tells it by its type and queues it (store.ts)
    if (blob === undefined) return Promise.reject(noSuchPacket())
    try {
      const queued = this.codec.decode(blob) as OutgoingPacket
      const value = this.codec.encode(packet)
      const ops: Op[] = []
      if (queued.messageId != null && queued.messageId > 0) ops.push({ type: 'del', key: outgoingIdKey(client.id, queued.messageId) })
      ops.push({ type: 'put', key: outgoingIdKey(client.id, packet.messageId), value }, { type: 'put', key: prekey, value })
      return this.db.batch(ops, BUFFER)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  clear (client: ClientLike, packet: { messageId?: number | null }): Promise<unknown> {
    const key = outgoingIdKey(client.id, packet.messageId)
    return this.afterRead(key, blob => this.clearSent(client, key, blob))
  }

  private clearSent (client: ClientLike, key: string, blob: Buffer | undefined): Promise<unknown> {
    if (blob === undefined) return Promise.resolve(undefined)
    try {
      const sent = this.codec.decode(blob) as OutgoingPacket
      return this.db.batch([{ type: 'del', key }, { type: 'del', key: outgoingKey(client.id, sent.brokerId, sent.brokerCounter) }]).then(() => sent)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Runs `next` on what a get of `key` answers: at once if the group commit holds the key, else after the read. */
  private afterRead<T> (key: string, next: (blob: Buffer | undefined) => Promise<T>): Promise<T> {
    const kept = this.peek(key)
    return kept !== undefined ? next(kept.value) : this.db.get(key, BUFFER).then(next)
  }
}

/** Replaces the store's outgoing-queue methods on the instance (`outgoingUpdate`'s callback form too); the others stay its own. */
export function replaceOutgoingQueue<T> (store: T, db: ClassicLevel<string, Buffer>, codec = new PacketCodec(), peek?: Peek): T {
  const s = store as T & OutgoingStore
  const queue = new OutgoingQueue(db, codec, peek)
  s.outgoingEnqueue = (sub, packet) => queue.enqueue([sub], packet)
  s.outgoingEnqueueCombi = async (subs, packet) => {
    // the store's answer to no subscribers
    if (subs === undefined || subs === null || subs.length === 0) return packet
    await queue.enqueue(subs, packet)
  }
  s.outgoingUpdate = (client, packet, cb) => {
    const done = queue.update(client, packet)
    if (cb === undefined) return done
    done.then(() => cb(null, client, packet), cb)
    return undefined
  }
  s.outgoingClearMessageId = (client, packet) => queue.clear(client, packet)
  return store
}
