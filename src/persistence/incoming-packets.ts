/**
 * aedes-persistence-level's QoS 2 received messages (`incomingStorePacket`, `incomingGetPacket`), writing the same
 * keys and values, and reading back what was just written without decoding it (packet-codec.ts).
 *
 * aedes stores every new QoS 2 PUBLISH before its PUBREC and looks it up again on the PUBREL (aedes 2 only asks
 * whether it is there). The store encodes it with msgpack-lite and decodes it on that lookup: profiled
 * (`node --cpu-prof`, durable-q2-p10), 8.4% of the broker's busy time. `incomingDelPacket` stays the store's own.
 */
import type { ClassicLevel } from 'classic-level'
import { incomingKey, queuedValue } from './level-layout.js'
import { noSuchPacket } from './no-such-packet.js'
import type { PacketCodec } from './packet-codec.js'

const BUFFER = { valueEncoding: 'buffer' } as const

interface ClientLike { id: string }
interface IncomingPacket { messageId?: number }
interface IncomingStore {
  incomingStorePacket (client: ClientLike, packet: IncomingPacket): Promise<void>
  incomingGetPacket (client: ClientLike, packet: IncomingPacket): Promise<unknown>
}

/** Replaces the store's two methods on the instance; the others stay its own. */
export function replaceIncomingPackets<T> (store: T, db: ClassicLevel<string, Buffer>, codec: PacketCodec): T {
  const s = store as T & IncomingStore
  s.incomingStorePacket = async (client, packet) => {
    // the store's copy: aedes-packet's, with the packet's own id
    const stored = queuedValue(packet) as IncomingPacket
    stored.messageId = packet.messageId
    await db.put(incomingKey(client.id, packet.messageId), codec.encode(stored), BUFFER)
  }
  s.incomingGetPacket = async (client, packet) => {
    const blob = await db.get(incomingKey(client.id, packet.messageId), BUFFER)
    if (blob === undefined) throw noSuchPacket()
    return codec.decode(blob)
  }
  return store
}
