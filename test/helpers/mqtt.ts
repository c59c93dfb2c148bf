import mqtt, { type MqttClient, type IClientOptions, type IPublishPacket } from 'mqtt'
import type { OnTestFinishedHandler } from 'vitest'

export interface Received { topic: string, payload: string, qos: number, retain: boolean, dup: boolean }

/** MQTT.js client that never reconnects and is ended when the test finishes. */
export async function connect (url: string, opts: IClientOptions, onFinished?: (fn: OnTestFinishedHandler) => void): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  onFinished?.(async () => { await c.endAsync(true) })
  return c
}

/** Collects messages; `take(n)` resolves once n have arrived (in arrival order). */
export function collect (c: MqttClient): { messages: Received[], take: (n: number, timeoutMs?: number) => Promise<Received[]> } {
  const messages: Received[] = []
  let waiter: { n: number, resolve: (m: Received[]) => void } | undefined
  c.on('message', (topic, payload, packet: IPublishPacket) => {
    messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, dup: packet.dup })
    if (waiter && messages.length >= waiter.n) { waiter.resolve(messages.slice(0, waiter.n)); waiter = undefined }
  })
  return {
    messages,
    take: (n, timeoutMs = 10_000) => messages.length >= n
      ? Promise.resolve(messages.slice(0, n))
      : new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out: got ${messages.length} of ${n} messages: ${JSON.stringify(messages)}`)), timeoutMs)
        waiter = { n, resolve: m => { clearTimeout(t); resolve(m) } }
      })
  }
}

/** A barrier: a QoS 1 publish to a private topic round-trips through the broker after everything sent before it. */
export async function barrier (c: MqttClient): Promise<void> {
  const topic = `$barrier-none/${Math.random()}`
  await c.publishAsync(topic.slice(1), '', { qos: 1 })
}

/** Connects, starts collecting and subscribes: the watcher most tests need. */
export async function subscriber (url: string, clientId: string, filter: string, qos: 0 | 1 | 2, onFinished?: (fn: OnTestFinishedHandler) => void) {
  const client = await connect(url, { clientId }, onFinished)
  const got = collect(client)
  await client.subscribeAsync(filter, { qos })
  return { client, ...got }
}
