/**
 * Feeds BrokerStats from aedes events and from each connection, with one increment per event on the hot path.
 */
import type { Socket } from 'node:net'
import type { Aedes, Client, AedesPublishPacket } from 'aedes'
import type { BrokerStats } from './stats.js'
import { FrameScanner, FRAME_HEADER, FRAME_MORE, FRAME_MALFORMED } from '../mqtt/frames.js'

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
 * Counts one accepted connection's raw socket (for WebSocket, the upgraded request's socket) for the byte figures;
 * with `listen` false the caller reports its close (`BrokerStats.socketClosed`). Outgoing MQTT packets are counted
 * by the write coalescer with `countPackets`, once per written batch.
 */
export function trackConnection (stats: BrokerStats, listenerId: string, raw: Socket, listen = true): void {
  stats.trackSocket(listenerId, raw, listen)
}

/** One scanner for every count: `countPackets` runs to completion, so no two counts share it at once. */
const scanner = new FrameScanner()

/**
 * The number of MQTT packets that start in `chunks` (a batch of whole packets, as the write coalescer hands to the
 * socket; aedes writes one packet in several chunks): the fixed headers are read with the framer's scanner
 * (mqtt/frames.ts), bodies skipped by arithmetic; nothing is copied.
 */
export function countPackets (chunks: readonly Buffer[]): number {
  scanner.reset()
  let packets = 0
  for (const chunk of chunks) {
    let at = 0
    for (;;) {
      const ev = scanner.scan(chunk, at)
      at = scanner.at
      if (ev === FRAME_HEADER) packets++
      else if (ev === FRAME_MORE) break
      else if (ev === FRAME_MALFORMED) return packets
    }
  }
  return packets
}
