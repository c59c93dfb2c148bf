/**
 * aedes-persistence-level's `outgoingUpdate` as one LevelDB batch instead of three writes in a row.
 *
 * Before each QoS 1/2 message goes to a persistent session, aedes gives it a message id and calls `outgoingUpdate`,
 * and writes the message only once that resolves. aedes-persistence-level then reads the queued message, deletes
 * the id it had (if any), puts the message under its new id and puts it back under its queue key: each write
 * awaited before the next starts, so with the group commit (group-commit.ts) the message waits for two or three
 * LevelDB batches, one after the other, and each put encodes the packet with msgpack again. With the outgoing window
 * (20 messages in flight per client) those round trips bound durable QoS 1/2 throughput.
 *
 * Here the same keys get the same values (one msgpack encoding of the packet for both puts) in one batch, after the
 * same read; the store's state after it is the one aedes-persistence-level leaves, reached atomically. A packet
 * without a broker id (aedes' PUBREL path, which looks the message up by id first) goes to the store's own method.
 */
import type { ClassicLevel } from 'classic-level'
import { msgpack, outgoingIdKey, outgoingKey } from './level-layout.js'
import { noSuchPacket } from './no-such-packet.js'

const BUFFER = { valueEncoding: 'buffer' } as const

interface OutgoingPacket { brokerId?: string, brokerCounter?: number, messageId?: number }
interface ClientLike { id: string }
type Callback = (err: Error | null, client?: ClientLike, packet?: OutgoingPacket) => void
interface OutgoingStore { outgoingUpdate (client: ClientLike, packet: OutgoingPacket, cb?: Callback): Promise<void> | undefined }

async function updateInOneBatch (db: ClassicLevel<string, Buffer>, client: ClientLike, packet: OutgoingPacket): Promise<void> {
  const prekey = outgoingKey(client.id, packet.brokerId, packet.brokerCounter)
  const blob = await db.get(prekey, BUFFER)
  // not queued for this client: MidgeStore tells it by its type and queues it (store.ts)
  if (blob === undefined) throw noSuchPacket()
  const queued = msgpack.decode(blob) as { messageId?: number | null }
  const value = msgpack.encode(packet)
  const ops: Array<{ type: 'put', key: string, value: Buffer } | { type: 'del', key: string }> = []
  if (queued.messageId != null && queued.messageId > 0) ops.push({ type: 'del', key: outgoingIdKey(client.id, queued.messageId) })
  ops.push({ type: 'put', key: outgoingIdKey(client.id, packet.messageId), value }, { type: 'put', key: prekey, value })
  await db.batch(ops, BUFFER)
}

/** Replaces the store's `outgoingUpdate` on the instance (its callback form too); the other methods stay its own. */
export function updateOutgoingInOneBatch<T> (store: T, db: ClassicLevel<string, Buffer>): T {
  const s = store as T & OutgoingStore
  const own = s.outgoingUpdate.bind(s)
  s.outgoingUpdate = (client, packet, cb) => {
    if (!packet.brokerId) return own(client, packet, cb)
    const done = updateInOneBatch(db, client, packet)
    if (cb === undefined) return done
    done.then(() => cb(null, client, packet), cb)
    return undefined
  }
  return store
}
