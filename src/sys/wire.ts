/**
 * Feeds BrokerStats from aedes events and from each connection, with one increment per event on the hot path.
 */
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { Aedes, Client, AedesPublishPacket } from 'aedes'
import type { BrokerStats } from './stats.js'

/** Listener id of a client's connection (the Broker's connection contexts). */
export type ListenerOf = (client: Client) => string | undefined

export function wireStats (aedes: Aedes, stats: BrokerStats, listenerOf: ListenerOf): void {
  aedes.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    if (!client) return // the broker's own ($SYS, wills of vanished clients)
    stats.publishReceived++
    stats.publishBytesReceived += packet.payload.length
  })
  aedes.on('client', () => {
    stats.connections++
    if (aedes.connectedClients > stats.clientsMaximum) stats.clientsMaximum = aedes.connectedClients
  })
  aedes.on('connackSent', (packet: { returnCode?: number }, client: Client) => {
    const code = packet.returnCode ?? 0
    if (code === 0) return
    const id = listenerOf(client)
    if (id !== undefined) stats.refused(id, code)
  })
}

/**
 * Counts one accepted connection: its raw socket's bytes (for WebSocket, the upgraded request's socket), and the
 * MQTT packets written to it. aedes writes each packet field by field (mqtt-packet's writeToStream), so a small
 * scanner reads only the fixed headers (type byte + remaining length) of the outgoing bytes and skips bodies by
 * arithmetic, like the packet guard does for incoming bytes; the chunks are neither copied nor changed.
 */
export function trackConnection (stats: BrokerStats, listenerId: string, stream: Duplex, raw: Socket): void {
  stats.trackSocket(listenerId, raw)
  const write = stream.write
  // 0 = expecting a type byte, 1 = in the remaining length, 2 = in a body
  let state = 0
  let length = 0
  let multiplier = 1
  let skip = 0
  const scan = (chunk: Buffer): void => {
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (state === 2) {
        const step = Math.min(skip, n - i)
        i += step
        skip -= step
        if (skip === 0) state = 0
        continue
      }
      const byte = chunk[i++]!
      if (state === 0) { state = 1; length = 0; multiplier = 1; continue }
      length += (byte & 0x7f) * multiplier
      multiplier *= 128
      if ((byte & 0x80) !== 0) continue
      stats.packetsOut++
      if (length === 0) state = 0
      else { state = 2; skip = length }
    }
  }
  stream.write = function countedWrite (this: Duplex, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (typeof chunk === 'string') {
      // strings (topics) are inside a body: only their length matters
      const len = Buffer.byteLength(chunk)
      if (state === 2 && len < skip) skip -= len
      else scan(Buffer.from(chunk))
    } else if (state === 2 && (chunk as Buffer).length < skip) {
      skip -= (chunk as Buffer).length
    } else if (chunk instanceof Uint8Array) {
      scan(chunk as Buffer)
    }
    return (write as (c: unknown, e?: unknown, cb?: unknown) => boolean).call(this, chunk, encoding, cb)
  } as Duplex['write']
}
