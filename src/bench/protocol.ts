/** Messages between the bench runner and its load-generator worker processes. */

export interface TransportSpec {
  kind: 'tcp' | 'tls' | 'ws' | 'wss'
  host: string
  port: number
  /** PEM of the CA that signed the broker's certificate (tls, wss). */
  ca?: string
}

export interface GroupSpec {
  kind: 'pub' | 'sub' | 'idle'
  count: number
  /** Client ids are `${idPrefix}${index}`. */
  idPrefix: string
  clean: boolean
  /** pub: topic; `{i}` is replaced by the client's index. */
  topic?: string
  qos?: 0 | 1 | 2
  /** flood: QoS 0 as fast as TCP lets us; paced: QoS 0 batches, each answered by a PINGRESP, a few in flight; window: `window` QoS 1/2 messages in flight; rate: `rate` msg/s each. */
  mode?: 'flood' | 'paced' | 'window' | 'rate'
  window?: number
  rate?: number
  payloadBytes?: number
  /** sub: the filter and its QoS (from `qos`). */
  filter?: string
  /** sub: read the send time the publisher wrote into the payload and record the latency. */
  latency?: boolean
  /** MQTT protocol level: 4 (3.1.1, the default) or 5. */
  protocolVersion?: 4 | 5
}

export type ToWorker =
  | { cmd: 'setup', transport: TransportSpec, groups: GroupSpec[], connectConcurrency: number }
  | { cmd: 'start' }
  | { cmd: 'mark' }
  | { cmd: 'collect' }
  | { cmd: 'stopPublishing' }
  | { cmd: 'retainedLoad', transport: TransportSpec, count: number, payloadBytes: number }
  | { cmd: 'retainedFetch', transport: TransportSpec, count: number, timeoutMs: number }
  | { cmd: 'close' }

export interface Collected {
  sent: number
  received: number
  /** Wall time since `mark`, in ms. */
  elapsedMs: number
  /** CPU time since `mark`, in ms (user + system). */
  cpuMs: number
  /** Latencies in microseconds, when a subscriber records them. */
  latenciesUs?: number[]
  /** Connections lost since setup. */
  lost: number
}

export type FromWorker =
  | { ok: true, cmd: 'setup', connectMs: number }
  | { ok: true, cmd: 'collect', data: Collected }
  | { ok: true, cmd: 'retainedLoad', ms: number, acked: number }
  | { ok: true, cmd: 'retainedFetch', ms: number, received: number }
  | { ok: true, cmd: 'start' | 'mark' | 'stopPublishing' | 'close' }
  | { ok: false, cmd: string, error: string }
