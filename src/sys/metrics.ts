/**
 * Prometheus metrics (prom-client), one Registry per broker (several brokers may share a process in tests and
 * embedders). Values are read at scrape time from the same snapshot as `$SYS`, plus per-listener connections
 * and refused CONNECTs, plus prom-client's default process and Node.js metrics (one set per process).
 */
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client'
import type { Aedes } from 'aedes'
import { VERSION } from '../version.js'
import type { BrokerStats, Snapshot } from './stats.js'

export interface MetricsDeps {
  aedes: () => Aedes | undefined
  stats: BrokerStats
  /** Live connections per listener id (Broker.connections). */
  connections: Map<string, number>
}

/** The snapshot's plain numbers (not the per-protocol table). */
type NumericField = Exclude<keyof Snapshot, 'clientsByProtocol'>

/** Counters read from the snapshot: metric name (without `midge_` and `_total`), help, field. */
const COUNTERS: Array<[string, string, NumericField]> = [
  ['messages_received', 'MQTT packets received from clients, of every type ($SYS/broker/messages/received).', 'messagesReceived'],
  ['messages_sent', 'MQTT packets sent to clients, of every type ($SYS/broker/messages/sent).', 'messagesSent'],
  ['publish_messages_received', 'PUBLISH packets received from clients.', 'publishReceived'],
  ['publish_messages_sent', 'PUBLISH packets sent to clients.', 'publishSent'],
  ['publish_messages_dropped', 'PUBLISH messages not delivered: publishes acknowledged but refused (ACL, reserved topic), and messages not queued for a client whose queue was full or who did not read (max_queued_messages, slow consumer).', 'publishDropped'],
  ['publish_bytes_received', 'Payload bytes of PUBLISH packets received.', 'publishBytesReceived'],
  ['publish_bytes_sent', 'Payload bytes of PUBLISH packets sent.', 'publishBytesSent'],
  ['bytes_received', 'Bytes received on MQTT connections (TCP, TLS and WebSocket sockets).', 'bytesReceived'],
  ['bytes_sent', 'Bytes sent on MQTT connections.', 'bytesSent'],
  ['connections', 'Successful MQTT CONNECTs.', 'connections'],
  ['sockets', 'Connections accepted (before CONNECT).', 'sockets'],
  ['clients_expired', 'Persistent sessions expired by persistent_client_expiration.', 'clientsExpired']
]

const GAUGES: Array<[string, string, NumericField]> = [
  ['uptime_seconds', 'Seconds since the broker started.', 'uptimeSeconds'],
  ['clients_connected', 'Clients connected now.', 'clientsConnected'],
  ['clients_disconnected', 'Persistent sessions whose client is not connected.', 'clientsDisconnected'],
  ['clients_maximum', 'Most clients connected at once since start.', 'clientsMaximum'],
  ['retained_messages', 'Retained messages in the store (including $SYS).', 'retainedCount'],
  ['retained_bytes', 'Payload bytes of retained messages in the store.', 'retainedBytes'],
  ['subscriptions', 'Subscriptions of connected clients.', 'subscriptions'],
  ['shared_subscriptions', 'Shared subscriptions ($share/...), offline persistent members included.', 'sharedSubscriptions'],
  ['heap_bytes', 'V8 heap in use (bytes).', 'heapCurrent']
]

/** What /metrics serves: this broker's metrics and the process-wide ones. */
export interface MetricsSource {
  readonly contentType: string
  metrics (): Promise<string>
}

let processRegistry: Registry | undefined
/**
 * prom-client's process and Node.js metrics, registered once per process: each registration starts an event-loop
 * monitor and a GC observer that are never stopped, so one per broker would leak in embedders and tests.
 */
function processMetrics (): Registry {
  if (!processRegistry) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

// prom-client metrics join the registry named in `registers` when constructed, and the registry holds them.
/* eslint-disable no-new */
export function createMetrics (deps: MetricsDeps): MetricsSource {
  const register = new Registry()
  let current: Promise<Snapshot | undefined> | undefined
  // every collector of one scrape shares one snapshot
  const snapshot = (): Promise<Snapshot | undefined> => {
    if (!current) {
      const aedes = deps.aedes()
      current = aedes ? deps.stats.snapshot(aedes) : Promise.resolve(undefined)
      setImmediate(() => { current = undefined })
    }
    return current
  }

  new Gauge({ name: 'midge_info', help: 'Midge version.', labelNames: ['version'], registers: [register] }).set({ version: VERSION }, 1)

  for (const [name, help, field] of COUNTERS) {
    new Counter({
      name: `midge_${name}_total`,
      help,
      registers: [register],
      async collect () {
        const s = await snapshot()
        this.reset()
        if (s) this.inc(s[field])
      }
    })
  }
  for (const [name, help, field] of GAUGES) {
    new Gauge({
      name: `midge_${name}`,
      help,
      registers: [register],
      async collect () {
        const s = await snapshot()
        if (s) this.set(s[field])
      }
    })
  }
  new Gauge({
    name: 'midge_clients_connected_by_protocol',
    help: 'Clients connected now, per MQTT protocol version (3.1, 3.1.1, 5.0).',
    labelNames: ['version'],
    registers: [register],
    async collect () {
      const s = await snapshot()
      if (!s) return
      this.set({ version: '3.1' }, s.clientsByProtocol[3])
      this.set({ version: '3.1.1' }, s.clientsByProtocol[4])
      this.set({ version: '5.0' }, s.clientsByProtocol[5])
    }
  })
  new Gauge({
    name: 'midge_listener_connections',
    help: 'Open MQTT connections per listener.',
    labelNames: ['listener'],
    registers: [register],
    collect () {
      for (const [id, n] of deps.connections) this.set({ listener: id }, n)
    }
  })
  new Counter({
    name: 'midge_listener_connections_total',
    help: 'Connections accepted per listener since start.',
    labelNames: ['listener'],
    registers: [register],
    collect () {
      this.reset()
      for (const id of deps.connections.keys()) this.inc({ listener: id }, deps.stats.listener(id).sockets)
    }
  })
  new Counter({
    name: 'midge_auth_failures_total',
    help: 'CONNECTs refused with CONNACK 4 (bad user name or password) or 5 (not authorised), per listener.',
    labelNames: ['listener'],
    registers: [register],
    collect () {
      this.reset()
      for (const id of deps.connections.keys()) {
        const r = deps.stats.listener(id).refused
        this.inc({ listener: id }, (r.get(4) ?? 0) + (r.get(5) ?? 0))
      }
    }
  })
  new Counter({
    name: 'midge_connack_refused_total',
    help: 'CONNECTs refused, per listener and CONNACK return code.',
    labelNames: ['listener', 'code'],
    registers: [register],
    collect () {
      this.reset()
      for (const id of deps.connections.keys()) {
        for (const [code, n] of deps.stats.listener(id).refused) this.inc({ listener: id, code: String(code) }, n)
      }
    }
  })
  const shared = processMetrics()
  return {
    contentType: register.contentType,
    metrics: () => Registry.merge([shared, register]).metrics()
  }
}
/* eslint-enable no-new */
