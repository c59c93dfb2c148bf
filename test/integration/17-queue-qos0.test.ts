/**
 * queue_qos0_messages: what would reach an offline persistent session at QoS 0 is kept for it (src/broker/qos0-queue.ts),
 * compared with Debian's mosquitto 2.0.11 on the same steps.
 */
import { test, expect } from 'vitest'
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt'
import type { Client as AedesClient } from 'aedes'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { connect, collect, type Received } from '../helpers/mqtt.js'
import { freePort, spawnMosquitto, writeConf } from '../helpers/processes.js'
import { loadConfig, startBroker, type Broker } from '../../src/index.js'

const QUEUE = 'listener 0 127.0.0.1\nallow_anonymous true\nqueue_qos0_messages true\n'

/** Ends a client and resolves once the broker has registered its session as offline. */
async function leave (b: TestBroker, c: Awaited<ReturnType<typeof connect>>, id: string): Promise<void> {
  const gone = new Promise<void>(resolve => {
    const on = (client: AedesClient): void => { if (client.id === id) { b.broker.aedes.off('clientDisconnect', on); resolve() } }
    b.broker.aedes.on('clientDisconnect', on)
  })
  await c.endAsync()
  await gone
}

/** Publishes q0-1, q0-2 (QoS 0), q1-3 (QoS 1), q0-4 (QoS 0), q2-5 (QoS 2) to a/x, each acknowledged or flushed before the next. */
async function publishFive (url: string): Promise<void> {
  const p = await connect(url, { clientId: 'pub' })
  for (const [m, qos] of [['q0-1', 0], ['q0-2', 0], ['q1-3', 1], ['q0-4', 0], ['q2-5', 2]] as const) await p.publishAsync('a/x', m, { qos })
  // a QoS 1 round trip: the broker has routed the QoS 0 messages before it
  await p.publishAsync('sync', '', { qos: 1 })
  await p.endAsync()
}

const summary = (g: Received[]): string[] => g.map(m => `${m.qos} ${m.payload}`)

/** An in-process Midge on a LevelDB store in `dir` (kept across restarts), closed when the test ends. */
async function levelBroker (dir: string, extra: string, onTestFinished: (fn: () => Promise<void>) => void): Promise<{ broker: Broker, url: string }> {
  const broker = await startBroker(loadConfig({ configText: `listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\n${extra}`, configName: 'test.conf' }))
  onTestFinished(() => broker.close())
  return { broker, url: broker.url('tcp') }
}

/** Connects and resolves once aedes has sent the stored queue (`clientReady`), with what arrived by then. */
async function returnAndDrain (b: Broker, url: string, id: string): Promise<{ client: Awaited<ReturnType<typeof connect>>, got: Received[] }> {
  const ready = new Promise<void>(resolve => {
    const on = (c: AedesClient): void => { if (c.id === id) { b.aedes.off('clientReady', on); resolve() } }
    b.aedes.on('clientReady', on)
  })
  const got: Received[] = []
  const client = await connect(url, { clientId: id, clean: false, got })
  await ready
  // what aedes wrote before clientReady has arrived once a later round trip has
  await client.publishAsync('sync', '', { qos: 1 })
  return { client, got }
}

test('a persistent QoS 0 subscriber gets what was published while it was away, at QoS 0; a QoS 1 one gets the QoS 0 messages after its stored queue', async ({ onTestFinished }) => {
  const b = await startTestBroker(QUEUE)
  onTestFinished(() => b.close())
  for (const [id, qos] of [['dev0', 0], ['dev1', 1]] as const) {
    const c = await connect(b.url(), { clientId: id, clean: false })
    await c.subscribeAsync('a/#', { qos })
    await leave(b, c, id)
  }
  await publishFive(b.url())
  const got0: Received[] = []
  const c0 = await connect(b.url(), { clientId: 'dev0', clean: false, got: got0 }, onTestFinished)
  expect(c0.sessionPresent).toBe(true)
  await collect(c0).until(() => got0.length >= 5, '5 messages')
  expect(summary(got0)).toEqual(['0 q0-1', '0 q0-2', '0 q1-3', '0 q0-4', '0 q2-5'])
  expect(got0.every(m => !m.retain && m.topic === 'a/x')).toBe(true)
  const got1: Received[] = []
  const c1 = await connect(b.url(), { clientId: 'dev1', clean: false, got: got1 }, onTestFinished)
  await collect(c1).until(() => got1.length >= 5, '5 messages')
  expect(summary(got1)).toEqual(['1 q1-3', '1 q2-5', '0 q0-1', '0 q0-2', '0 q0-4'])
  // sent once: a second return finds nothing
  await c0.publishAsync('sync', '', { qos: 1 })
  await leave(b, c0, 'dev0')
  const again: Received[] = []
  const c0b = await connect(b.url(), { clientId: 'dev0', clean: false, got: again }, onTestFinished)
  await c0b.publishAsync('sync', '', { qos: 1 })
  expect(again).toEqual([])
})

test('Debian\'s mosquitto 2.0.11 delivers the same messages at the same QoS (in arrival order)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const port = await freePort()
  const m = await spawnMosquitto(await writeConf(dir, `user root\nlog_dest stderr\nlistener ${port} 127.0.0.1\nallow_anonymous true\nqueue_qos0_messages true\n`))
  onTestFinished(() => m.stop())
  for (const [id, qos] of [['dev0', 0], ['dev1', 1]] as const) {
    const c = await connect(m.url(), { clientId: id, clean: false })
    await c.subscribeAsync('a/#', { qos })
    const gone = m.waitFor(new RegExp(`Client ${id} disconnected`), 5000)
    await c.endAsync()
    await gone
  }
  await publishFive(m.url())
  for (const [id, want] of [['dev0', ['0 q0-1', '0 q0-2', '0 q1-3', '0 q0-4', '0 q2-5']], ['dev1', ['0 q0-1', '0 q0-2', '1 q1-3', '0 q0-4', '1 q2-5']]] as const) {
    const got: Received[] = []
    const c = await connect(m.url(), { clientId: id, clean: false, got }, onTestFinished)
    await collect(c).until(() => got.length >= 5, '5 messages')
    expect(summary(got)).toEqual(want)
  }
})

test('without queue_qos0_messages nothing delivered at QoS 0 is kept (the default, as in mosquitto)', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'dev0', clean: false })
  await c.subscribeAsync('a/#', { qos: 0 })
  await leave(b, c, 'dev0')
  await publishFive(b.url())
  const got: Received[] = []
  const back = await connect(b.url(), { clientId: 'dev0', clean: false, got }, onTestFinished)
  await back.publishAsync('sync', '', { qos: 1 })
  expect(got).toEqual([])
})

test('the queue counts against max_queued_messages with the stored QoS 1 queue; the drop is counted', async ({ onTestFinished }) => {
  const b = await startTestBroker(`${QUEUE}max_queued_messages 3\n`)
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'dev1', clean: false })
  await c.subscribeAsync('a/#', { qos: 1 })
  await leave(b, c, 'dev1')
  const p = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await p.publishAsync('a/x', 'q1-1', { qos: 1 })
  await p.publishAsync('a/x', 'q1-2', { qos: 1 })
  for (const m of ['q0-3', 'q0-4', 'q0-5']) await p.publishAsync('a/x', m, { qos: 0 })
  await p.publishAsync('sync', '', { qos: 1 })
  expect(b.broker.durability.stats.droppedQueueFull).toBe(2)
  const got: Received[] = []
  const back = await connect(b.url(), { clientId: 'dev1', clean: false, got }, onTestFinished)
  await collect(back).until(() => got.length >= 3, '3 messages')
  await back.publishAsync('sync', '', { qos: 1 })
  expect(summary(got)).toEqual(['1 q1-1', '1 q1-2', '0 q0-3'])
})

test('v5: a clean start drops the queue; a continued session gets the remaining expiry and its subscription identifier; an expired message is dropped', async ({ onTestFinished }) => {
  const b = await startTestBroker(QUEUE)
  onTestFinished(() => b.close())
  const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } }
  const c = await connect(b.url(), { clientId: 'ha', ...v5 })
  await c.subscribeAsync('a/#', { qos: 0, properties: { subscriptionIdentifier: 7 } })
  await leave(b, c, 'ha')
  const p = await connect(b.url(), { clientId: 'pub', protocolVersion: 5 }, onTestFinished)
  await p.publishAsync('a/x', 'lives', { qos: 0, properties: { messageExpiryInterval: 600, contentType: 'text/plain', userProperties: { k: 'v' } } })
  await p.publishAsync('a/x', 'expires', { qos: 0, properties: { messageExpiryInterval: 1 } })
  await p.publishAsync('sync', '', { qos: 1 })
  // the second message's interval runs out while the client is away
  await new Promise(resolve => setTimeout(resolve, 1100))
  const packets: Array<{ payload: string, properties?: Record<string, unknown> }> = []
  const back = mqttWithPackets(b.url(), { clientId: 'ha', ...v5 }, packets)
  await new Promise<void>((resolve, reject) => { back.once('connect', () => resolve()); back.once('error', reject) })
  onTestFinished(() => back.endAsync(true))
  await back.publishAsync('sync', '', { qos: 1 })
  expect(packets.map(x => x.payload)).toEqual(['lives'])
  const props = packets[0]!.properties!
  expect(props.subscriptionIdentifier).toBe(7)
  expect(props.contentType).toBe('text/plain')
  expect(props.userProperties).toEqual({ k: 'v' })
  expect(props.messageExpiryInterval).toBeGreaterThanOrEqual(598)
  expect(props.messageExpiryInterval).toBeLessThanOrEqual(600)
  // away again, a message queued, then back with Clean Start: no session, no queue
  await leave(b, back as Awaited<ReturnType<typeof connect>>, 'ha')
  await p.publishAsync('a/x', 'old session', { qos: 0 })
  await p.publishAsync('sync', '', { qos: 1 })
  const fresh: Received[] = []
  const clean = await connect(b.url(), { clientId: 'ha', protocolVersion: 5, clean: true, properties: { sessionExpiryInterval: 300 }, got: fresh }, onTestFinished)
  expect(clean.sessionPresent).toBe(false)
  await clean.publishAsync('sync', '', { qos: 1 })
  expect(fresh).toEqual([])
})

/** A LevelDB Midge that stored the persistent session dev0 (QoS 0 on a/#, away) and was restarted: the second run. */
async function restartedWithStoredSession (extra: string, onTestFinished: (fn: () => Promise<void>) => void): Promise<{ broker: Broker, url: string }> {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const first = await levelBroker(dir, extra, onTestFinished)
  const c = await connect(first.url, { clientId: 'dev0', clean: false })
  await c.subscribeAsync('a/#', { qos: 0 })
  await c.endAsync()
  await first.broker.close()
  return await levelBroker(dir, extra, onTestFinished)
}

test('LevelDB: sessions stored before a restart get QoS 0 messages published after it', async ({ onTestFinished }) => {
  const second = await restartedWithStoredSession('queue_qos0_messages true\n', onTestFinished)
  await publishFive(second.url)
  const { client, got } = await returnAndDrain(second.broker, second.url, 'dev0')
  onTestFinished(() => client.endAsync(true))
  expect(summary(got)).toEqual(['0 q0-1', '0 q0-2', '0 q1-3', '0 q0-4', '0 q2-5'])
})

/** An MQTT.js client that keeps each PUBLISH's payload and properties from the first packet on. */
function mqttWithPackets (url: string, opts: IClientOptions, into: Array<{ payload: string, properties?: Record<string, unknown> }>): MqttClient {
  const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
  c.on('packetreceive', (p: Packet) => {
    if (p.cmd === 'publish' && p.topic !== 'sync') into.push({ payload: p.payload.toString(), ...(p.properties !== undefined ? { properties: p.properties as Record<string, unknown> } : {}) })
  })
  return c
}

test('LevelDB, without the option: after a restart a QoS 0 subscription of a persistent session gets no stored queue (as before the restart, and as mosquitto)', async ({ onTestFinished }) => {
  const second = await restartedWithStoredSession('', onTestFinished)
  await publishFive(second.url)
  // aedes-persistence-level reads the QoS 0 subscription into its index at start-up: q1-3 and q2-5 were stored for
  // it, sent at QoS 0 at each return (never acknowledged, so never deleted)
  for (const round of [1, 2]) {
    const { client, got } = await returnAndDrain(second.broker, second.url, 'dev0')
    expect({ round, got: summary(got) }).toEqual({ round, got: [] })
    await client.endAsync()
  }
})
