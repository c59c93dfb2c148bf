/**
 * Broker statistics behind `$SYS/broker/...` and `GET /metrics`. The hot path only ever does integer
 * increments on this object; everything else (bytes on the wire, connected clients, retained messages,
 * subscriptions, heap) is read from existing state when a snapshot is taken (every sys_interval, or per scrape).
 */
import { brokerInternals, connectedClients, subscriptionsOf } from '../aedes/internals.js'
import type { Socket } from 'node:net'
import type { Aedes } from 'aedes'

/** Per-listener counters (Prometheus labels: `listener`). */
export interface ListenerStats {
  /** Sockets accepted since start (MQTT and WebSocket upgrades; plain HTTP requests are not counted). */
  sockets: number
  /** CONNACKs with a non-zero return code, by code. */
  refused: Map<number, number>
}

/** The subset of aedes-persistence that snapshots (and /healthz) use. */
export interface StoreView {
  storeRetained (packet: { cmd: 'publish', topic: string, payload: Buffer, qos: 0, retain: true, dup: false }): Promise<void>
  createRetainedStream (pattern: string): AsyncIterable<{ topic: string, payload: Buffer, qos: number, properties?: Record<string, unknown> }>
  countOffline? (): Promise<{ subsCount: number, clientsCount: number }>
}

export interface Snapshot {
  uptimeSeconds: number
  clientsConnected: number
  clientsDisconnected: number
  clientsTotal: number
  clientsMaximum: number
  clientsExpired: number
  messagesReceived: number
  messagesSent: number
  publishReceived: number
  publishSent: number
  publishDropped: number
  publishBytesReceived: number
  publishBytesSent: number
  bytesReceived: number
  bytesSent: number
  connections: number
  sockets: number
  retainedCount: number
  retainedBytes: number
  subscriptions: number
  /** Shared subscriptions held (`$share/...`), offline persistent members included, as mosquitto counts them. */
  sharedSubscriptions: number
  heapCurrent: number
  heapMaximum: number
  /** Connected clients by MQTT protocol level (3 = 3.1, 4 = 3.1.1, 5 = 5.0). */
  clientsByProtocol: { 3: number, 4: number, 5: number }
}

/** The store aedes actually uses (aedes keeps it as `broker.persistence`; its types do not say so). */
export function storeOf (aedes: Aedes): StoreView {
  return brokerInternals(aedes).persistence as StoreView
}

export class BrokerStats {
  readonly startedAt = Date.now()
  /** MQTT packets received from clients (every type), counted by the packet guard as headers go by. */
  readonly packetsIn = { count: 0 }
  /** MQTT packets written to clients (every type). */
  packetsOut = 0
  publishReceived = 0
  publishBytesReceived = 0
  publishSent = 0
  publishBytesSent = 0
  /** Publishes acknowledged but not routed (ACL denied, reserved topics); queue drops come from `persistence`. */
  publishDropped = 0
  /** Successful MQTT CONNECTs. */
  connections = 0
  /** Sockets accepted (MQTT over TCP/TLS, WebSocket upgrades). */
  sockets = 0
  clientsMaximum = 0
  /** Persistent sessions removed by persistent_client_expiration (incremented by that feature). */
  clientsExpired = 0
  heapMaximum = 0
  /** Shared subscriptions held (broker/shared-subscriptions.ts). */
  sharedSubscriptions?: () => number
  /** The store's own counters (queue-full and slow-consumer drops, expired sessions), when it keeps them. */
  persistence?: { readonly droppedQueueFull: number, readonly droppedSlowConsumer: number, readonly stuckEpisodes?: number, readonly expiredClients: number }
  readonly listeners = new Map<string, ListenerStats>()
  /** Raw sockets of live connections: their byte counters are read at snapshot time. */
  private readonly live = new Set<Socket>()
  private closedBytesRead = 0
  private closedBytesWritten = 0

  listener (id: string): ListenerStats {
    let l = this.listeners.get(id)
    if (!l) { l = { sockets: 0, refused: new Map() }; this.listeners.set(id, l) }
    return l
  }

  /**
   * A connection was accepted: `raw` is the TCP/TLS socket (for WebSocket, the upgraded request's socket). Its close
   * is heard here, or, with `listen` false, told by the caller's own close listener on it (`socketClosed`): a third
   * listener on one event turns the socket's list of two into an array of 20 slots, 176 bytes per idle connection.
   */
  trackSocket (listenerId: string, raw: Socket, listen = true): void {
    this.sockets++
    this.listener(listenerId).sockets++
    if (this.live.has(raw)) return
    this.live.add(raw)
    if (listen) raw.on('close', this.onSocketClose) // one listener function for every socket (memory per idle connection)
  }

  /** A tracked socket closed: its bytes move to the closed totals. Any other stream is no socket of ours. */
  socketClosed (raw: object): void {
    const socket = raw as Socket
    if (!this.live.delete(socket)) return
    this.closedBytesRead += socket.bytesRead
    this.closedBytesWritten += socket.bytesWritten
  }

  private readonly onSocketClose = ((stats: BrokerStats) => function closed (this: Socket): void {
    stats.socketClosed(this)
  })(this)

  refused (listenerId: string, returnCode: number): void {
    const m = this.listener(listenerId).refused
    m.set(returnCode, (m.get(returnCode) ?? 0) + 1)
  }

  bytes (): { received: number, sent: number } {
    let received = this.closedBytesRead
    let sent = this.closedBytesWritten
    for (const s of this.live) { received += s.bytesRead; sent += s.bytesWritten }
    return { received, sent }
  }

  async snapshot (aedes: Aedes): Promise<Snapshot> {
    const persistence = storeOf(aedes)
    const clients = connectedClients(aedes)
    const clientsByProtocol = { 3: 0, 4: 0, 5: 0 }
    let subscriptions = 0
    let persistentLive = 0
    /** QoS 1/2 subscriptions of connected persistent sessions: the store's offline count includes them. */
    let persistentLiveQosSubs = 0
    for (const id in clients) {
      const c = clients[id]!
      if (c.version === 3 || c.version === 4 || c.version === 5) clientsByProtocol[c.version]++
      const subs = subscriptionsOf(c)
      const n = Object.keys(subs).length
      subscriptions += n
      if (!c.clean && n > 0) {
        persistentLive++
        for (const f in subs) if (subs[f]!.qos > 0) persistentLiveQosSubs++
      }
    }
    let retainedCount = 0
    let retainedBytes = 0
    for await (const p of persistence.createRetainedStream('#')) {
      retainedCount++
      retainedBytes += p.payload.length
    }
    const offline = persistence.countOffline ? await persistence.countOffline() : { clientsCount: 0, subsCount: 0 }
    // as mosquitto counts them, the subscriptions of disconnected persistent sessions too (the store counts QoS 1/2 ones)
    subscriptions += Math.max(0, offline.subsCount - persistentLiveQosSubs)
    const connected = aedes.connectedClients
    const disconnected = Math.max(0, offline.clientsCount - persistentLive)
    const heap = process.memoryUsage().heapUsed
    if (heap > this.heapMaximum) this.heapMaximum = heap
    if (connected > this.clientsMaximum) this.clientsMaximum = connected
    const b = this.bytes()
    return {
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      clientsConnected: connected,
      clientsDisconnected: disconnected,
      clientsTotal: connected + disconnected,
      clientsMaximum: this.clientsMaximum,
      clientsExpired: this.clientsExpired + (this.persistence?.expiredClients ?? 0),
      messagesReceived: this.packetsIn.count,
      messagesSent: this.packetsOut,
      publishReceived: this.publishReceived,
      publishSent: this.publishSent,
      publishDropped: this.publishDropped + (this.persistence ? this.persistence.droppedQueueFull + this.persistence.droppedSlowConsumer : 0),
      publishBytesReceived: this.publishBytesReceived,
      publishBytesSent: this.publishBytesSent,
      bytesReceived: b.received,
      bytesSent: b.sent,
      connections: this.connections,
      sockets: this.sockets,
      retainedCount,
      retainedBytes,
      subscriptions,
      sharedSubscriptions: this.sharedSubscriptions?.() ?? 0,
      heapCurrent: heap,
      heapMaximum: this.heapMaximum,
      clientsByProtocol
    }
  }
}
