/**
 * Queues and sessions over time: max_queued_messages for offline sessions, queue order across restarts,
 * persistent_client_expiration, and aedes' duplicate filter (which drops messages; Midge replaces it).
 * In-process brokers on a LevelDB store in a temp dir, restarted on the same dir where needed.
 */
import { test, expect } from 'vitest'
import pino from 'pino'
import type { MqttClient, IPublishPacket } from 'mqtt'
import { loadConfig, startBroker, type Broker } from '../../src/index.js'
import { tempDir } from '../helpers/start-broker.js'
import { connect, collect, type Received } from '../helpers/mqtt.js'

interface Started { broker: Broker, url: string, logs: string[] }

async function start (dir: string, extra = ''): Promise<Started> {
  const logs: string[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => { logs.push(s) } })
  const config = loadConfig({
    configText: `listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}\n${extra}`,
    configName: 'test.conf'
  })
  const broker = await startBroker(config, { log })
  return { broker, url: broker.url('tcp'), logs }
}

/** Resolves once `got` holds `n` messages, or after `timeoutMs` (the caller's assertion then shows what came). */
function waitCount (c: MqttClient, got: unknown[], n: number, timeoutMs: number): Promise<void> {
  if (got.length >= n) return Promise.resolve()
  return new Promise(resolve => {
    const t = setTimeout(done, timeoutMs)
    function done (): void { clearTimeout(t); c.off('message', on); resolve() }
    function on (): void { if (got.length >= n) setImmediate(done) }
    c.on('message', on)
  })
}

/** Resolves once `n` messages arrived, then two QoS 1 round trips later (anything extra would have arrived by then). */
async function expectExactly (c: MqttClient, got: unknown[], n: number, timeoutMs = 10_000): Promise<void> {
  await waitCount(c, got, n, timeoutMs)
  // a QoS 1 round trip on a topic nobody subscribes to: the broker has sent everything queued before its PUBACK
  await c.publishAsync('barrier/none', '', { qos: 1 })
  await c.publishAsync('barrier/none', '', { qos: 1 })
}

test('max_queued_messages 10: an offline session keeps the first 10 QoS 1 messages, drops the rest, counts them and logs once', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-limits-')
  onTestFinished(remove)
  const b = await start(dir, 'max_queued_messages 10\n')
  onTestFinished(() => b.broker.close())
  const keeper = await connect(b.url, { clientId: 'slowpoke', clean: false })
  await keeper.subscribeAsync('q/#', { qos: 1 })
  await keeper.endAsync()

  const pub = await connect(b.url, { clientId: 'pub' })
  await Promise.all(Array.from({ length: 30 }, (_, i) => pub.publishAsync('q/t', `m${i + 1}`, { qos: 1 })))
  await pub.endAsync()
  expect(b.broker.durability.stats.droppedQueueFull).toBe(20)
  const warnings = b.logs.filter(l => l.includes('Outgoing messages are being dropped for client slowpoke'))
  expect(warnings).toHaveLength(1)

  // mosquitto 2.0.11 with the same settings delivers m1..m10 (checked with mosquitto_sub -c / mosquitto_pub)
  const got: Received[] = []
  const back = await connect(b.url, { clientId: 'slowpoke', clean: false, got })
  onTestFinished(() => back.endAsync(true))
  expect(back.sessionPresent).toBe(true)
  await expectExactly(back, got, 10)
  expect(got.map(m => m.payload)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i + 1}`))

  // the queue drained: new messages are queued again, and the limit is logged again when it fills up again
  await back.endAsync()
  const pub2 = await connect(b.url, { clientId: 'pub' })
  await Promise.all(Array.from({ length: 11 }, (_, i) => pub2.publishAsync('q/t', `n${i + 1}`, { qos: 1 })))
  await pub2.endAsync()
  expect(b.broker.durability.stats.droppedQueueFull).toBe(21)
  expect(b.logs.filter(l => l.includes('Outgoing messages are being dropped for client slowpoke'))).toHaveLength(2)
})

test('the queue limit counts what the store held before a restart', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-limits-')
  onTestFinished(remove)
  let b = await start(dir, 'max_queued_messages 5\n')
  const keeper = await connect(b.url, { clientId: 'k', clean: false })
  await keeper.subscribeAsync('q/#', { qos: 1 })
  await keeper.endAsync()
  const pub = await connect(b.url, { clientId: 'pub' })
  await Promise.all(Array.from({ length: 3 }, (_, i) => pub.publishAsync('q/t', `m${i + 1}`, { qos: 1 })))
  await pub.endAsync()
  await b.broker.close()

  b = await start(dir, 'max_queued_messages 5\n')
  onTestFinished(() => b.broker.close())
  const pub2 = await connect(b.url, { clientId: 'pub' })
  await Promise.all(Array.from({ length: 5 }, (_, i) => pub2.publishAsync('q/t', `m${i + 4}`, { qos: 1 })))
  await pub2.endAsync()
  expect(b.broker.durability.stats.droppedQueueFull).toBe(3)
  const got: Received[] = []
  const back = await connect(b.url, { clientId: 'k', clean: false, got })
  onTestFinished(() => back.endAsync(true))
  await expectExactly(back, got, 5)
  expect(got.map(m => m.payload)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5'])
})

test('an offline queue keeps publish order across several restarts (aedes keys it by a random broker id per start)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-order-')
  onTestFinished(remove)
  let b = await start(dir)
  const keeper = await connect(b.url, { clientId: 'k', clean: false })
  await keeper.subscribeAsync('q/#', { qos: 1 })
  await keeper.endAsync()
  // with aedes' random UUIDs the chance that 6 starts sort in order is 1/720
  for (let i = 1; i <= 6; i++) {
    const pub = await connect(b.url, { clientId: 'pub' })
    await pub.publishAsync('q/t', `boot${i}`, { qos: 1 })
    await pub.endAsync()
    await b.broker.close()
    b = await start(dir)
  }
  onTestFinished(() => b.broker.close())
  const got: Received[] = []
  const back = await connect(b.url, { clientId: 'k', clean: false, got })
  onTestFinished(() => back.endAsync(true))
  await expectExactly(back, got, 6)
  expect(got.map(m => m.payload)).toEqual(['boot1', 'boot2', 'boot3', 'boot4', 'boot5', 'boot6'])
})

test('persistent_client_expiration removes an abandoned session, its subscriptions and its queue; not a recent one', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-expiry-')
  onTestFinished(remove)
  const b = await start(dir, 'persistent_client_expiration 1h\n')
  onTestFinished(() => b.broker.close())
  const expiry = b.broker.durability.expiry!
  expect(expiry).toBeDefined()
  for (const id of ['old', 'recent']) {
    const c = await connect(b.url, { clientId: id, clean: false })
    await c.subscribeAsync('q/#', { qos: 1 })
    await c.endAsync()
  }
  const pub = await connect(b.url, { clientId: 'pub' })
  await pub.publishAsync('q/t', 'queued', { qos: 1 })
  // `recent` comes back 50 minutes later (its last-seen is moved forward), `old` never does
  const t0 = Date.now()
  await expiry.touch('recent', t0 + 50 * 60_000)
  expect(await expiry.sweep(t0 + 30 * 60_000)).toEqual([])
  expect(await expiry.sweep(t0 + 61 * 60_000)).toEqual(['old'])
  expect(b.broker.durability.stats.expiredClients).toBe(1)
  expect(b.logs.some(l => l.includes('Expiring client old due to timeout.'))).toBe(true)

  // gone: no session, no queue; and the subscription no longer routes to a store entry
  const got: Received[] = []
  const old = await connect(b.url, { clientId: 'old', clean: false, got })
  expect(old.sessionPresent).toBe(false)
  await pub.publishAsync('q/t', 'after', { qos: 1 })
  await expectExactly(old, got, 0, 0)
  expect(got.map(m => m.payload)).toEqual([])
  await old.endAsync()
  // still there
  const gotRec: Received[] = []
  const rec = await connect(b.url, { clientId: 'recent', clean: false, got: gotRec })
  expect(rec.sessionPresent).toBe(true)
  await expectExactly(rec, gotRec, 2)
  expect(gotRec.map(m => m.payload)).toEqual(['queued', 'after'])
  await rec.endAsync()
  await pub.endAsync()
})

test('aedes duplicate filter: a # subscriber gets all 200 publishes when retained and plain ones alternate', async ({ onTestFinished }) => {
  // bare aedes 1.2.0 + aedes-persistence-level delivers 100 of these 200 (counter-based dedupe, see broker/delivery.ts)
  const { dir, remove } = await tempDir('midge-dedupe-')
  onTestFinished(remove)
  const b = await start(dir)
  onTestFinished(() => b.broker.close())
  const sub = await connect(b.url, { clientId: 'sub' })
  onTestFinished(() => sub.endAsync(true))
  const got: string[] = []
  sub.on('message', (t: string, _p: Buffer, pk: IPublishPacket) => { if (!t.startsWith('barrier')) got.push(`${t}:${pk.qos}`) })
  await sub.subscribeAsync('t/#', { qos: 1 })
  const pub = await connect(b.url, { clientId: 'pub' })
  onTestFinished(() => pub.endAsync(true))
  for (let i = 0; i < 200; i++) pub.publish(`t/${i}`, 'x', { qos: 0, retain: i % 2 === 0 })
  await expectExactly(sub, got, 200)
  expect(got).toHaveLength(200)
  expect(new Set(got).size).toBe(200)
})

test('overlapping subscriptions of one client still get one copy per message', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-dedupe-')
  onTestFinished(remove)
  const b = await start(dir)
  onTestFinished(() => b.broker.close())
  const sub = await connect(b.url, { clientId: 'sub', clean: false })
  onTestFinished(() => sub.endAsync(true))
  const got = collect(sub).messages
  await sub.subscribeAsync({ 'a/#': { qos: 1 }, 'a/b': { qos: 1 }, '+/b': { qos: 0 } })
  const pub = await connect(b.url, { clientId: 'pub' })
  onTestFinished(() => pub.endAsync(true))
  await pub.publishAsync('a/b', 'one', { qos: 1 })
  await pub.publishAsync('a/b', 'two', { qos: 0 })
  await expectExactly(sub, got, 2)
  // one copy of each (QoS 1 to a persistent session waits for a store write, so 'two' may come first)
  expect(got.map(m => m.payload).sort()).toEqual(['one', 'two'])
})
