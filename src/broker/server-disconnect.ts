/**
 * A DISCONNECT the server sends a v5 client (receive maximum exceeded 0x93, topic alias invalid 0x94, packet too
 * large 0x95, session taken over 0x8E, ...) tells it why the connection ends, and is the last packet on it
 * [MQTT-3.14.4-1]. aedes writes it and destroys the socket on the next turn. Two things go wrong there:
 *
 * - Whatever the client sent meanwhile (the rest of a burst of PUBLISHes, the PUBRELs for the PUBRECs it was
 *   sent) is unread when the socket closes, and the kernel answers with a TCP reset. The client's next send then
 *   fails (EPIPE) before it has read the DISCONNECT, and its stack may drop the DISCONNECT it has not read yet: the
 *   reason never arrives. The Paho interoperability suite's flow control test fails so (it answers each PUBREC
 *   before it reaches the 0x93).
 * - Packets of the batch that aedes still handles after the DISCONNECT (a PUBREC for a QoS 2 message stored a
 *   moment later) are written after it.
 *
 * So once aedes has written a server DISCONNECT to a v5 client, nothing else is written to that connection, and
 * its close is a lingering one, as HTTP servers do it: the stream is ended (the DISCONNECT, then FIN), what the
 * client still sends is read and discarded, and the socket is destroyed when the client closes its side or after
 * LINGER_MS. A broker shutting down closes at once. Test: 51-mqtt5-interop.
 */
import type { Duplex } from 'node:stream'
import type { Client } from 'aedes'
import { clientInternals, disconnectAsAedes, type ClientInternals } from '../aedes/internals.js'

/** How long a connection the server disconnected is kept half-open for the client to read the DISCONNECT. */
export const LINGER_MS = 2000

type WriteCb = (err?: Error | null) => void

export function lingerAfterServerDisconnect (aedesClient: Client): void {
  clientInternals(aedesClient).disconnect = lingeringDisconnect
}

/** One function for every client (no closure per connection), in place of aedes' `disconnect`. */
function lingeringDisconnect (this: ClientInternals, opts?: { reasonCode?: number }, done?: () => void): void {
  const client = this
  const stream = client.conn
  const sendsDisconnect = client.version === 5 && client.connected && !client.closed
  disconnectAsAedes(client, opts, done)
  if (!sendsDisconnect) return
  // the DISCONNECT is written (aedes writes synchronously): nothing may follow it
  stream.write = function afterDisconnect (_chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    const callback = typeof encoding === 'function' ? encoding : cb
    if (typeof callback === 'function') process.nextTick(callback as WriteCb)
    return true
  } as Duplex['write']
  const destroy = stream.destroy
  stream.destroy = function lingeringDestroy (this: Duplex, err?: Error) {
    stream.destroy = destroy
    if (err !== undefined || client.broker.closed || stream.destroyed) return destroy.call(this, err)
    stream.end()
    const timer = setTimeout(() => stream.destroy(), LINGER_MS)
    timer.unref()
    stream.once('close', () => clearTimeout(timer))
    stream.once('end', () => stream.destroy())
    // read and discard: unread bytes are what makes the kernel reset the connection
    stream.on('data', () => {})
    return this
  }
}
