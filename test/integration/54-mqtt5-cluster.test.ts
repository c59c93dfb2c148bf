/**
 * MQTT 5 across a cluster: two `node dist/main.js` nodes on one real Redis (`npm run build` first). Properties travel
 * through mqemitter-redis (live), aedes-persistence-redis (offline queue, retained) and come out unchanged on the
 * other node; a session's expiry interval is honoured by the node it left.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt'
import { tempDir } from '../helpers/start-broker.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { connect } from '../helpers/mqtt.js'
import { spawnMidge, writeConf, type MidgeProcess } from '../helpers/processes.js'

let redis: TestRedis
let dir: string
let removeDir: () => Promise<void>
let a: MidgeProcess
let b: MidgeProcess

async function node (id: string): Promise<MidgeProcess> {
  return spawnMidge(await writeConf(dir, `listener 0 127.0.0.1\nallow_anonymous true\ncluster_redis ${redis.url}\nnode_id ${id}\nsys_interval 0\n`, `${id}.conf`), dir)
}

beforeAll(async () => {
  redis = await startRedis()
  ;({ dir, remove: removeDir } = await tempDir('midge-cluster5-'))
  ;[a, b] = await Promise.all([node('a'), node('b')])
}, 30_000)

afterAll(async () => {
  await Promise.all([a?.kill('SIGKILL'), b?.kill('SIGKILL')])
  await redis?.close()
  await removeDir?.()
})

const PROPS = {
  payloadFormatIndicator: true,
  contentType: 'application/json',
  responseTopic: 'ha/reply/7',
  correlationData: Buffer.from([0, 1, 2, 0xfe]),
  userProperties: { site: 'kitchen', unit: 'C' },
  messageExpiryInterval: 600
}

interface Got { topic: string, payload: string, qos: number, retain: boolean, properties: Record<string, unknown> }

/** A v5 MQTT.js client that records every PUBLISH (with its properties) from the first packet on. */
async function v5 (url: string, opts: IClientOptions, onFinished: (fn: () => Promise<void>) => void): Promise<{ c: MqttClient, got: Got[], sessionPresent: boolean }> {
  const got: Got[] = []
  const c = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...opts })
  c.on('packetreceive', (p: Packet) => {
    if (p.cmd === 'publish') got.push({ topic: p.topic, payload: p.payload.toString(), qos: p.qos, retain: p.retain, properties: (p.properties ?? {}) as Record<string, unknown> })
  })
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    c.once('connect', (ack) => resolve(ack.sessionPresent))
    c.once('error', reject)
  })
  onFinished(async () => { await c.endAsync(true) })
  return { c, got, sessionPresent }
}

async function arrived (got: Got[], n: number, c: MqttClient): Promise<void> {
  const t0 = Date.now()
  while (got.length < n) {
    if (Date.now() - t0 > 10_000) throw new Error(`got ${got.length} of ${n}`)
    await new Promise<void>(resolve => c.once('packetreceive', () => resolve()))
  }
}

function expectProps (p: Record<string, unknown>, extra: Record<string, unknown> = {}): void {
  const { messageExpiryInterval, ...rest } = p
  expect(rest).toEqual({ payloadFormatIndicator: true, contentType: 'application/json', responseTopic: 'ha/reply/7', correlationData: Buffer.from([0, 1, 2, 0xfe]), userProperties: { site: 'kitchen', unit: 'C' }, ...extra })
  expect(messageExpiryInterval).toBeGreaterThanOrEqual(595)
  expect(messageExpiryInterval).toBeLessThanOrEqual(600)
}

test('live: a v5 PUBLISH on node A reaches a v5 subscriber on node B with every property and its subscription identifier', async ({ onTestFinished }) => {
  const sub = await v5(b.url(), { clientId: 'live-sub' }, onTestFinished)
  await sub.c.subscribeAsync('home/#', { qos: 1, properties: { subscriptionIdentifier: 12 } })
  const pub = await connect(a.url(), { clientId: 'live-pub', protocolVersion: 5 }, onTestFinished)
  await pub.publishAsync('home/kitchen/temp', '{"t":21.5}', { qos: 1, properties: PROPS })
  await arrived(sub.got, 1, sub.c)
  expect(sub.got.map(g => [g.topic, g.payload, g.qos, g.retain])).toEqual([['home/kitchen/temp', '{"t":21.5}', 1, false]])
  expectProps(sub.got[0]!.properties, { subscriptionIdentifier: 12 })
})

test('offline queue: a message queued in Redis for a v5 session that left node B comes out of node A with its properties', async ({ onTestFinished }) => {
  const first = await v5(b.url(), { clientId: 'ha-5', clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
  await first.c.subscribeAsync('cmd/#', { qos: 1 })
  await first.c.endAsync()
  const pub = await connect(a.url(), { clientId: 'queue-pub', protocolVersion: 5 }, onTestFinished)
  await pub.publishAsync('cmd/lamp', 'on', { qos: 1, properties: PROPS })
  const back = await v5(a.url(), { clientId: 'ha-5', clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
  expect(back.sessionPresent).toBe(true)
  await arrived(back.got, 1, back.c)
  expect(back.got.map(g => [g.topic, g.payload, g.qos])).toEqual([['cmd/lamp', 'on', 1]])
  expectProps(back.got[0]!.properties)
})

test('retained: a retained v5 message stored through node A is sent by node B with its properties', async ({ onTestFinished }) => {
  const pub = await connect(a.url(), { clientId: 'ret-pub', protocolVersion: 5 }, onTestFinished)
  await pub.publishAsync('state/lamp', 'on', { qos: 1, retain: true, properties: PROPS })
  const sub = await v5(b.url(), { clientId: 'ret-sub' }, onTestFinished)
  await sub.c.subscribeAsync('state/#', { qos: 1 })
  await arrived(sub.got, 1, sub.c)
  expect(sub.got.map(g => [g.topic, g.payload, g.retain])).toEqual([['state/lamp', 'on', true]])
  expectProps(sub.got[0]!.properties)
})

test('session expiry: a session that left node A with a 1 s interval is gone when its client returns on node B 1.5 s later', async ({ onTestFinished }) => {
  const first = await v5(a.url(), { clientId: 'short-5', clean: false, properties: { sessionExpiryInterval: 1 } }, onTestFinished)
  await first.c.subscribeAsync('short/#', { qos: 1 })
  await first.c.endAsync()
  // the interval is the point of this test: it has to run out
  await new Promise(resolve => setTimeout(resolve, 1500))
  const back = await v5(b.url(), { clientId: 'short-5', clean: false, properties: { sessionExpiryInterval: 1 } }, onTestFinished)
  expect(back.sessionPresent).toBe(false)
  // and its subscription went with it: nothing routed to it
  const pub = await connect(a.url(), { clientId: 'short-pub' }, onTestFinished)
  await pub.publishAsync('short/x', 'x', { qos: 1 })
  await back.c.publishAsync('sync', '', { qos: 1 })
  expect(back.got).toEqual([])
})
