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
 * Counts one accepted connection: its raw socket's bytes (for WebSocket: the upgraded request's socket), and the
 * MQTT packets written to it. aedes writes every packet through mqtt-packet's writeToStream, which corks the
 * stream once per packet: counting cork() calls counts packets without touching their bytes.
 */
export function trackConnection (stats: BrokerStats, listenerId: string, stream: Duplex, raw: Socket): void {
  stats.trackSocket(listenerId, raw)
  const cork = stream.cork
  stream.cork = function countedCork (this: Duplex) {
    stats.packetsOut++
    cork.call(this)
  }
}
