/**
 * [MQTT-3.3.1-1] A QoS 1/2 PUBLISH that the broker sends again must carry DUP=1. aedes 1.2.0 resends the in-flight
 * messages of a persistent session on reconnect (from persistence.outgoingStream) with DUP=0 (test: 02-subpub
 * "QoS 1 outbound is resent with DUP"). A message that was already sent has a packet id assigned by
 * persistence.outgoingUpdate; a queued one that never left has none. So the stream of a session's outgoing
 * messages is passed through a mark that sets DUP on those with a packet id. aedes-packet copies `dup` when
 * aedes wraps the packet. The persistence object is wrapped, not modified.
 */
import { Transform, type Readable } from 'node:stream'

interface OutgoingPacket { messageId?: number, dup?: boolean, cmd?: string }
interface WithOutgoingStream { outgoingStream (client: unknown): Readable }

export function markResendsDup<T extends object> (persistence: T): T {
  const p = persistence as unknown as WithOutgoingStream
  return new Proxy(persistence, {
    get (target, prop, receiver) {
      if (prop === 'outgoingStream') {
        return (client: unknown) => {
          const mark = new Transform({
            objectMode: true,
            transform (packet: OutgoingPacket, _enc, cb) {
              if (packet.cmd !== 'pubrel' && packet.messageId) packet.dup = true
              cb(null, packet)
            }
          })
          // pipe() does not carry errors: a store read that fails must end aedes' pipeline, not leave it waiting
          const source = p.outgoingStream(client)
          source.once('error', err => mark.destroy(err))
          return source.pipe(mark)
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}
