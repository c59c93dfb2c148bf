/**
 * MQTT.js clients for tests: connect, collect what arrives, wait for a condition on it. The one set every test
 * file uses (raw-client.ts is the byte-level client, processes.ts starts brokers).
 */
import mqtt, { type MqttClient, type IClientOptions, type IConnackPacket, type IPublishPacket } from 'mqtt'
import type { OnTestFinishedHandler } from 'vitest'

export interface Received { topic: string, payload: string, qos: number, retain: boolean, dup: boolean }

/** A connected client and what its CONNACK said about the session. */
export type Client = MqttClient & { sessionPresent: boolean }

export interface ConnectOptions extends IClientOptions {
  /**
   * Collects messages from the first one. A returning session's queued messages can come in the same read as its
   * CONNACK, and MQTT.js then handles them before an `await connect(...)` resumes: a handler attached after it
   * misses them, while MQTT.js acknowledges them (they leave the stored queue).
   */
  got?: Received[]
}

/**
 * MQTT.js client that never reconnects: resolves at its CONNACK, rejects on a connection error (a refused CONNACK
 * included) or a close before it; ended when the test finishes if `onFinished` is given.
 */
export async function connect (url: string, opts: ConnectOptions = {}, onFinished?: (fn: OnTestFinishedHandler) => void): Promise<Client> {
  const { got, ...clientOpts } = opts
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...clientOpts }) as Client
  if (got !== undefined) record(c, got)
  try {
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      const off = (): void => { c.off('connect', onConnect); c.off('error', onError); c.off('close', onClose) }
      const onConnect = (p: IConnackPacket): void => { off(); resolve(p) }
      const onError = (err: Error): void => { off(); reject(err) }
      const onClose = (): void => { off(); reject(new Error(`connection to ${url} closed before its CONNACK`)) }
      c.on('connect', onConnect)
      c.on('error', onError)
      c.on('close', onClose)
    })
    c.sessionPresent = connack.sessionPresent
  } catch (err) {
    c.end(true)
    throw err
  }
  onFinished?.(async () => { await c.endAsync(true) })
  return c
}

/**
 * Connects, or returns why not: `connack N`, or the TLS/socket error code, or `closed` when the broker closes
 * the connection without a word (Node's TLS server drops a client whose certificate it rejects after the TLS 1.3
 * handshake, where mosquitto sends an alert).
 */
export function attempt (url: string, opts: IClientOptions = {}): Promise<MqttClient | string> {
  return new Promise(resolve => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    const fail = (why: string): void => { c.removeAllListeners(); c.on('error', () => {}); c.end(true); resolve(why) }
    c.once('connect', () => { c.removeAllListeners('error'); c.removeAllListeners('close'); resolve(c) })
    c.once('error', (err: Error & { code?: number | string }) => fail(typeof err.code === 'number' ? `connack ${err.code}` : String(err.code ?? err.message)))
    c.once('close', () => fail('closed'))
  })
}

/** Pushes every message `c` receives onto `into`, which it returns. */
function record (c: MqttClient, into: Received[]): Received[] {
  c.on('message', (topic, payload, p: IPublishPacket) => {
    into.push({ topic, payload: payload.toString(), qos: p.qos, retain: p.retain, dup: p.dup })
  })
  return into
}

/** Resolves when `pred` holds for the messages received so far (checked on every message). */
export function until (c: MqttClient, got: Received[], pred: (g: Received[]) => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  if (pred(got)) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.off('message', on); reject(new Error(`timed out waiting for ${what}: got ${JSON.stringify(got.slice(-5))} (${got.length})`)) }, timeoutMs)
    const on = (): void => { if (pred(got)) { clearTimeout(t); c.off('message', on); resolve() } }
    c.on('message', on)
  })
}

export interface Collector {
  /** Every message so far, in arrival order. */
  messages: Received[]
  /** Resolves once n have arrived, with the first n. */
  take: (n: number, timeoutMs?: number) => Promise<Received[]>
  /** Resolves once `pred` holds for the messages so far. */
  until: (pred: (g: Received[]) => boolean, what: string, timeoutMs?: number) => Promise<void>
}

/** Collects the messages `c` receives from now on (pass `got` to connect() to have those before its CONNACK). */
export function collect (c: MqttClient): Collector {
  const messages = record(c, [])
  return {
    messages,
    take: async (n, timeoutMs = 10_000) => {
      try {
        await until(c, messages, g => g.length >= n, `${n} messages`, timeoutMs)
      } catch {
        throw new Error(`timed out: got ${messages.length} of ${n} messages: ${JSON.stringify(messages)}`)
      }
      return messages.slice(0, n)
    },
    until: (pred, what, timeoutMs) => until(c, messages, pred, what, timeoutMs)
  }
}

/** Connects, starts collecting and subscribes: the watcher most tests need. */
export async function subscriber (url: string, clientId: string, filter: string, qos: 0 | 1 | 2, onFinished?: (fn: OnTestFinishedHandler) => void) {
  const client = await connect(url, { clientId }, onFinished)
  const collector = collect(client)
  await client.subscribeAsync(filter, { qos })
  return { client, ...collector }
}

/** A barrier: a QoS 1 publish to a private topic round-trips through the broker after everything sent before it. */
export async function barrier (c: MqttClient): Promise<void> {
  const topic = `$barrier-none/${Math.random()}`
  await c.publishAsync(topic.slice(1), '', { qos: 1 })
}

/** The granted QoS (or 128) of each filter, whether or not MQTT.js counts the SUBACK as a failure. */
export async function subackCodes (c: MqttClient, subs: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  try {
    return (await c.subscribeAsync(subs)).map(g => g.qos)
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted
    if (!granted) throw err
    return granted
  }
}

/** The next message on an MQTT.js client (events.once does not type-check against MqttClient). */
export function nextMessage (c: MqttClient): Promise<[string, Buffer, { qos: number, retain: boolean }]> {
  return new Promise(resolve => c.once('message', (topic, payload, packet) => resolve([topic, payload, packet])))
}

/** The next 'error' of an MQTT.js client. */
export function nextError (c: MqttClient): Promise<Error> {
  return new Promise(resolve => c.once('error', err => resolve(err)))
}

/**
 * Polls a condition that has no event of its own (a counter inside the broker); rejects after `timeoutMs`.
 * Prefer `until` or an event wherever one exists.
 */
export async function eventually (pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now()
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} not met in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}
