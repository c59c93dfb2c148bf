/**
 * Feeds BrokerStats from aedes events and from each connection, with one increment per event on the hot path.
 */
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
 * Counts one accepted connection's raw socket (for WebSocket, the upgraded request's socket) for the byte figures.
 * Outgoing MQTT packets are counted by the write coalescer with `countPackets`, once per written batch.
 */
export function trackConnection (stats: BrokerStats, listenerId: string, raw: Socket): void {
  stats.trackSocket(listenerId, raw)
}

/**
 * The number of MQTT packets that start in `chunks` (a batch of whole packets, as the write coalescer hands to the
 * socket): reads only the fixed headers (type byte + remaining length) and skips bodies by arithmetic, like the
 * packet guard does for incoming bytes; nothing is copied.
 */
export function countPackets (chunks: readonly Buffer[]): number {
  let packets = 0
  // 0 = expecting a type byte, 1 = in the remaining length, 2 = in a body
  let state = 0
  let length = 0
  let multiplier = 1
  let skip = 0
  for (const chunk of chunks) {
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
      packets++
      if (length === 0) state = 0
      else { state = 2; skip = length }
    }
  }
  return packets
}
