/**
 * The stream of a persistent session's stored messages that aedes 1.2.0 sends on reconnect
 * (`persistence.outgoingStream`, read by lib/handlers/connect.js `emptyQueue`), passed through two steps:
 *
 * - [MQTT-3.3.1-1] A QoS 1/2 PUBLISH that the broker sends again must carry DUP=1. aedes resends the in-flight
 *   messages with DUP=0 (test: 02-subpub "QoS 1 outbound is resent with DUP"). A message that was already sent has
 *   a packet id assigned by persistence.outgoingUpdate; a queued one that never left has none. So those with a
 *   packet id get DUP set (aedes-packet copies `dup` when aedes wraps the packet).
 * - `max_inflight_messages`: each message goes on to aedes only when the client's outgoing window has a
 *   slot for it (delivery.ts (5), `admitStored`): aedes writes whatever the stream yields at once.
 *
 * The persistence object is wrapped, not modified.
 */
import { Transform, type Readable } from 'node:stream'
import { admitStored } from './delivery.js'

interface OutgoingPacket { messageId?: number, dup?: boolean, cmd?: string }
interface WithOutgoing { outgoingStream (client: unknown): Readable }

export function markResendsDup<T extends object> (persistence: T): T {
  const p = persistence as unknown as WithOutgoing
  return new Proxy(persistence, {
    get (target, prop, receiver) {
      if (prop === 'outgoingStream') {
        return (client: unknown) => {
          const source = p.outgoingStream(client)
          // a clean session's stale queue is cleared by aedes, not written: no DUP, no window, and no stream of
          // Midge's per CONNECT (most devices connect with a clean session)
          if ((client as { clean?: boolean }).clean === true) return source
          const mark = new Transform({
            objectMode: true,
            transform (packet: OutgoingPacket, _enc, cb) {
              if (packet.cmd !== 'pubrel' && packet.messageId) packet.dup = true
              admitStored(client, packet, err => err ? cb(err) : cb(null, packet))
            }
          })
          // pipe() does not carry errors: a store read that fails must end aedes' pipeline, not leave it waiting;
          // and a stream that ends early (the client went while it waited for a slot) closes the store's iterator
          source.once('error', err => mark.destroy(err))
          mark.once('close', () => source.destroy())
          return source.pipe(mark)
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      // bound on each access: persistence-fast-paths.ts, outside this wrapper, looks each method up once
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}
