/**
 * MQTT 5 clients: the CONNACK tells the truth about the config, v5 reason codes, properties passed through live,
 * through the offline queue (memory and LevelDB), the retained store and a SIGKILL, message expiry, and the
 * real clients Home Assistant and friends use (mosquitto_pub/sub -V 5, paho v5).
 */
import { test, expect } from 'vitest'
import { once, type EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { makeTestCerts } from '../helpers/certs.js'
import mqtt, { type MqttClient, type IClientOptions, type IPublishPacket, type IConnackPacket } from 'mqtt'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { spawnMidge, writeConf, run, PYTHON, mosquittoSub, messageLines } from '../helpers/processes.js'

const PROPS = {
  payloadFormatIndicator: true,
  contentType: 'application/json',
  responseTopic: 'dev1/replies',
  correlationData: Buffer.from([0, 1, 2, 255]),
  userProperties: { source: 'sensor', tags: ['a', 'b'] }
}

interface V5Message { topic: string, payload: string, qos: number, retain: boolean, properties: Record<string, unknown> }

async function connect5 (url: string, opts: IClientOptions, onFinished: (fn: () => Promise<void>) => void): Promise<{ client: MqttClient, connack: IConnackPacket, messages: V5Message[], take: (n: number) => Promise<V5Message[]> }> {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  // collect from the start: messages can arrive in the same read as the CONNACK
  const messages: V5Message[] = []
  let waiter: { n: number, resolve: () => void } | undefined
  client.on('message', (topic, payload, p: IPublishPacket) => {
    messages.push({ topic, payload: payload.toString(), qos: p.qos, retain: p.retain, properties: { ...p.properties } })
    if (waiter && messages.length >= waiter.n) waiter.resolve()
  })
  const [connack] = await Promise.race([
    once(client as unknown as EventEmitter, 'connect') as Promise<[IConnackPacket]>,
    once(client as unknown as EventEmitter, 'error').then(([e]) => { throw e instanceof Error ? e : new Error(String(e)) })
  ])
  onFinished(async () => { await client.endAsync(true) })
  const take = async (n: number): Promise<V5Message[]> => {
    if (messages.length < n) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`got ${messages.length} of ${n}: ${JSON.stringify(messages)}`)), 10_000)
        waiter = { n, resolve: () => { clearTimeout(t); resolve() } }
      })
    }
    return messages.slice(0, n)
  }
  return { client, connack, messages, take }
}

/** A raw v5 client that has sent its CONNECT: exact reason codes and properties as they are on the wire. */
async function raw5 (port: number, connect: Record<string, unknown> = {}): Promise<RawClient> {
  const c = await RawClient.connect(port, '127.0.0.1', 5)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'raw5', keepalive: 60, ...connect })
  return c
}

test('the v5 CONNACK carries the limits of the config, as mosquitto 2.0 sends them', async ({ onTestFinished }) => {
  const b = await startTestBroker(`listener 0 127.0.0.1
allow_anonymous true
max_keepalive 30
max_packet_size 2000
max_qos 1
retain_available false
max_inflight_messages 7
max_topic_alias 4
`)
  onTestFinished(() => b.close())
  const { connack } = await connect5(b.url(), { clientId: '', keepalive: 60 }, onTestFinished)
  expect(connack.reasonCode).toBe(0)
  const { assignedClientIdentifier, ...rest } = connack.properties ?? {}
  expect(typeof assignedClientIdentifier).toBe('string')
  expect(rest).toEqual({
    maximumQoS: 1,
    retainAvailable: false,
    maximumPacketSize: 2000,
    receiveMaximum: 7,
    topicAliasMaximum: 4,
    serverKeepAlive: 30
  })
})

test('defaults: Receive Maximum 20, Topic Alias Maximum 10, nothing about QoS or retain; a 3.1.1 client on the same listener gets its 4-byte CONNACK', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { connack } = await connect5(b.url(), { clientId: 'd5', keepalive: 60 }, onTestFinished)
  expect(connack.properties).toEqual({ receiveMaximum: 20, topicAliasMaximum: 10 })
  const r = await RawClient.connect(b.port())
  onTestFinished(() => r.end())
  await r.connectMqtt({ clientId: 'v4' })
  expect([...Buffer.concat(r.received)]).toEqual([0x20, 0x02, 0x00, 0x00])
})

test('accept_protocol_versions 4: a v5 CONNECT gets CONNACK 0x84 and the connection closes; 3.1.1 still connects', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\naccept_protocol_versions 4\n')
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  await c.closed
  expect([...Buffer.concat(c.received)]).toEqual([0x20, 0x03, 0x00, 0x84, 0x00])
  const r = await RawClient.connect(b.port())
  onTestFinished(() => r.end())
  expect((await r.connectMqtt({ clientId: 'v4' })).returnCode).toBe(0)
})

test('a v5 will above max_qos is refused with CONNACK 0x9B; a PUBLISH above it gets DISCONNECT 0x9B', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_qos 1\n')
  onTestFinished(() => b.close())
  const w = await raw5(b.port(), { clientId: 'w', will: { topic: 'w/t', payload: Buffer.from('x'), qos: 2, retain: false } })
  onTestFinished(() => w.end())
  const ack = await w.next('connack')
  expect(ack.reasonCode).toBe(0x9b)
  const p = await raw5(b.port(), { clientId: 'p' })
  onTestFinished(() => p.end())
  expect((await p.next('connack')).reasonCode).toBe(0)
  p.send({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, messageId: 1 })
  const d = await p.next('disconnect')
  expect(d.reasonCode).toBe(0x9b)
  await p.closed
  expect(p.packets.filter(x => x.cmd === 'pubrec')).toEqual([])
})

test('retain_available false: a v5 retained PUBLISH gets DISCONNECT 0x9A', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nretain_available false\n')
  onTestFinished(() => b.close())
  const p = await raw5(b.port())
  onTestFinished(() => p.end())
  await p.next('connack')
  p.send({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: true })
  expect((await p.next('disconnect')).reasonCode).toBe(0x9a)
  await p.closed
})

test('a v5 client over max_keepalive is told the limit (Server Keep Alive) and timed out by it', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_keepalive 1\n')
  onTestFinished(() => b.close())
  const c = await raw5(b.port(), { keepalive: 600 })
  onTestFinished(() => c.end())
  const ack = await c.next('connack')
  expect([ack.reasonCode, ack.properties?.serverKeepAlive]).toEqual([0, 1])
  const t0 = Date.now()
  await c.closed
  // [MQTT-3.1.2-24] 1.5 x the keepalive without a packet
  expect(Date.now() - t0).toBeLessThan(4000)
})

test('ACL: a v5 publish the ACL refuses gets PUBACK 0x87 and the connection stays; subscribing is allowed, delivery is read-checked (mosquitto 2.0)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const acl = `${dir}/acl`
  await (await import('node:fs/promises')).writeFile(acl, 'topic readwrite open/#\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${acl}\n`)
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  await c.next('connack')
  c.send({ cmd: 'publish', topic: 'closed/x', payload: Buffer.from('x'), qos: 1, messageId: 3 })
  const ack = await c.next('puback')
  expect([ack.messageId, ack.reasonCode]).toEqual([3, 0x87])
  c.send({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic: 'closed/#', qos: 1 }, { topic: 'open/#', qos: 1 }] })
  expect((await c.next('suback')).granted).toEqual([1, 1])
  c.send({ cmd: 'publish', topic: 'open/x', payload: Buffer.from('y'), qos: 1, messageId: 5 })
  expect((await c.next('puback')).reasonCode ?? 0).toBe(0)
  const m = await c.next('publish')
  expect(m.topic).toBe('open/x')
  await c.ping()
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('properties pass through unchanged: live, to a queued offline session, and from the retained store', async ({ onTestFinished }) => {
  for (const store of ['memory', 'level'] as const) {
    const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\n${store === 'level' ? 'persistence true\npersistence_location {dir}\n' : ''}`)
    onTestFinished(() => b.close())
    const live = await connect5(b.url(), { clientId: `live-${store}` }, onTestFinished)
    await live.client.subscribeAsync('dev1/#', { qos: 1 })
    const off = await connect5(b.url(), { clientId: `off-${store}`, clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
    await off.client.subscribeAsync('dev1/#', { qos: 1 })
    await off.client.endAsync()
    const pub = await connect5(b.url(), { clientId: `pub-${store}` }, onTestFinished)
    await pub.client.publishAsync('dev1/telemetry', '{"t":21}', { qos: 1, properties: PROPS })
    await pub.client.publishAsync('dev1/state', 'on', { qos: 1, retain: true, properties: PROPS })
    const [m1] = await live.take(1)
    expect(m1!.properties).toEqual(PROPS)
    const back = await connect5(b.url(), { clientId: `off-${store}`, clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
    expect(back.connack.sessionPresent).toBe(true)
    const queued = await back.take(2)
    expect(queued.map(m => [m.topic, m.payload, m.properties])).toEqual([['dev1/telemetry', '{"t":21}', PROPS], ['dev1/state', 'on', PROPS]])
    const late = await connect5(b.url(), { clientId: `late-${store}` }, onTestFinished)
    await late.client.subscribeAsync('dev1/state', { qos: 1 })
    const [r] = await late.take(1)
    expect([r!.retain, r!.properties]).toEqual([true, PROPS])
  }
})

test('message expiry: the remaining interval is sent on delivery, an expired queued or retained message is not delivered', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const off = await connect5(b.url(), { clientId: 'exp', clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
  await off.client.subscribeAsync('e/#', { qos: 1 })
  await off.client.endAsync()
  const pub = await connect5(b.url(), { clientId: 'exp-pub' }, onTestFinished)
  await pub.client.publishAsync('e/short', 'gone', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } })
  await pub.client.publishAsync('e/long', 'kept', { qos: 1, properties: { messageExpiryInterval: 100 } })
  // the short one must run out: wait for its interval (the behaviour under test is time itself)
  await new Promise(resolve => setTimeout(resolve, 2100))
  const back = await connect5(b.url(), { clientId: 'exp', clean: false, properties: { sessionExpiryInterval: 300 } }, onTestFinished)
  const [m] = await back.take(1)
  expect(m!.topic).toBe('e/long')
  expect(m!.properties.messageExpiryInterval).toBeGreaterThanOrEqual(97)
  expect(m!.properties.messageExpiryInterval).toBeLessThanOrEqual(100)
  const late = await connect5(b.url(), { clientId: 'exp-late' }, onTestFinished)
  await late.client.subscribeAsync('e/#', { qos: 1 })
  await pub.client.publishAsync('e/marker', 'm', { qos: 1 })
  const [first] = await late.take(1)
  expect(first!.topic).toBe('e/marker')
  expect(back.messages.map(x => x.topic)).toEqual(['e/long', 'e/marker'])
})

test('SIGKILL: v5 messages acknowledged while a persistent session is away arrive after restart with every property', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-v5-')
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/data\n'.replaceAll('{dir}', dir))
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  const sub = await connect5(first.url(), { clientId: 'ha', clean: false, properties: { sessionExpiryInterval: 3600 } }, onTestFinished)
  await sub.client.subscribeAsync('cmd/#', { qos: 1 })
  await sub.client.endAsync()
  const pub = await connect5(first.url(), { clientId: 'k-pub' }, onTestFinished)
  for (let i = 0; i < 50; i++) await pub.client.publishAsync('cmd/' + i, String(i), { qos: 1, properties: { ...PROPS, messageExpiryInterval: 3600 } })
  await first.kill('SIGKILL')
  const second = await spawnMidge(conf, dir)
  onTestFinished(async () => { await second.kill('SIGKILL') })
  const back = await connect5(second.url(), { clientId: 'ha', clean: false, properties: { sessionExpiryInterval: 3600 } }, onTestFinished)
  const got = await back.take(50)
  expect(got.map(m => m.payload)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)))
  for (const m of got) {
    const { messageExpiryInterval, ...rest } = m.properties
    expect(rest).toEqual(PROPS)
    expect(messageExpiryInterval).toBeGreaterThan(3500)
  }
}, 60_000)

test('mosquitto_pub/sub -V 5 with -D user properties and content type', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const port = String(b.port())
  const sub = mosquittoSub(['-V', '5', '-h', '127.0.0.1', '-p', port, '-t', 'ha/#', '-F', '%t %p %P'])
  await sub.ready
  const pub = await run('mosquitto_pub', ['-V', '5', '-h', '127.0.0.1', '-p', port, '-t', 'ha/light', '-m', 'ON', '-q', '1',
    '-D', 'publish', 'user-property', 'room', 'kitchen', '-D', 'publish', 'content-type', 'text/plain'])
  expect(pub.code).toBe(0)
  const out = await sub.done
  expect(out.code).toBe(0)
  expect(messageLines(out.stdout)).toEqual(['ha/light ON room:kitchen'])
})

test('the client\'s Receive Maximum narrows the outgoing window; its Maximum Packet Size drops what would not fit', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'small', keepalive: 60, properties: { receiveMaximum: 2, maximumPacketSize: 100 } })
  await c.next('connack')
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'w/#', qos: 1 }] })
  await c.next('suback')
  const pub = await connect5(b.url(), { clientId: 'wpub' }, onTestFinished)
  await pub.client.publishAsync('w/big', 'x'.repeat(200), { qos: 1 })
  for (let i = 0; i < 5; i++) await pub.client.publishAsync('w/' + i, String(i), { qos: 1 })
  await c.ping()
  // two in flight, nothing acknowledged yet: the rest waits
  expect(c.packets.filter(p => p.cmd === 'publish').map(p => p.topic)).toEqual(['w/0', 'w/1'])
  const first = c.packets.filter(p => p.cmd === 'publish')
  c.packets.length = 0
  for (const p of first) c.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 })
  const rest = [await c.next('publish'), await c.next('publish')]
  expect(rest.map(p => p.topic)).toEqual(['w/2', 'w/3'])
})

test('subscription options: No Local, Retain As Published, Retain Handling 0/1/2, and Subscription Identifiers', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const pub = await connect5(b.url(), { clientId: 'so-pub' }, onTestFinished)
  await pub.client.publishAsync('so/r', 'kept', { qos: 1, retain: true })
  const c = await connect5(b.url(), { clientId: 'so' }, onTestFinished)
  await c.client.subscribeAsync('so/#', { qos: 1, nl: true, rap: true, rh: 0, properties: { subscriptionIdentifier: 7 } })
  await c.client.subscribeAsync('so/r', { qos: 1, rh: 2, properties: { subscriptionIdentifier: 9 } })
  // rh 1 on a filter it already has: no retained message again
  await c.client.subscribeAsync('so/#', { qos: 1, nl: true, rap: true, rh: 1, properties: { subscriptionIdentifier: 7 } })
  await c.client.publishAsync('so/own', 'mine', { qos: 1 })
  await pub.client.publishAsync('so/r', 'again', { qos: 1, retain: true })
  const got = await c.take(2)
  expect(got.map(m => [m.topic, m.payload, m.retain])).toEqual([['so/r', 'kept', true], ['so/r', 'again', true]])
  expect(got[0]!.properties.subscriptionIdentifier).toBe(7)
  expect(c.messages.some(m => m.topic === 'so/own')).toBe(false)
})

test('topic aliases from a client: registered, then used with an empty topic; one over max_topic_alias gets DISCONNECT 0x94', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_topic_alias 2\n')
  onTestFinished(() => b.close())
  const sub = await connect5(b.url(), { clientId: 'ta-sub' }, onTestFinished)
  await sub.client.subscribeAsync('ta/#', { qos: 1 })
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'ta', keepalive: 60 })
  expect((await c.next('connack')).properties?.topicAliasMaximum).toBe(2)
  c.send({ cmd: 'publish', topic: 'ta/long/topic', payload: Buffer.from('1'), qos: 1, messageId: 1, properties: { topicAlias: 1 } })
  c.send({ cmd: 'publish', topic: '', payload: Buffer.from('2'), qos: 1, messageId: 2, properties: { topicAlias: 1 } })
  await c.next('puback'); await c.next('puback')
  const got = await sub.take(2)
  expect(got.map(m => [m.topic, m.payload, m.properties.topicAlias])).toEqual([['ta/long/topic', '1', undefined], ['ta/long/topic', '2', undefined]])
  c.send({ cmd: 'publish', topic: 'ta/x', payload: Buffer.from('3'), qos: 0, properties: { topicAlias: 3 } })
  expect((await c.next('disconnect')).reasonCode).toBe(0x94)
})

test('session expiry: a v5 session is kept for its interval, then gone; a DISCONNECT can shorten it', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const opts = (expiry: number) => ({ clientId: 'se', clean: false, properties: { sessionExpiryInterval: expiry } })
  const a = await connect5(b.url(), opts(1), onTestFinished)
  await a.client.subscribeAsync('se/#', { qos: 1 })
  await a.client.endAsync()
  const again = await connect5(b.url(), opts(1), onTestFinished)
  expect(again.connack.sessionPresent).toBe(true)
  await again.client.endAsync()
  // the interval must pass (the behaviour under test is time itself)
  await new Promise(resolve => setTimeout(resolve, 1600))
  const late = await connect5(b.url(), opts(60), onTestFinished)
  expect(late.connack.sessionPresent).toBe(false)
  await late.client.subscribeAsync('se/#', { qos: 1 })
  // DISCONNECT with Session Expiry 0 ends the session now
  await late.client.endAsync(false, { properties: { sessionExpiryInterval: 0 } })
  const after = await connect5(b.url(), opts(60), onTestFinished)
  expect(after.connack.sessionPresent).toBe(false)
})

test('will delay: no will when the client returns in time; the will after the delay otherwise', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const watch = await connect5(b.url(), { clientId: 'will-watch' }, onTestFinished)
  await watch.client.subscribeAsync('wd/#', { qos: 1 })
  const will = (t: string) => ({ topic: t, payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } })
  const back = await RawClient.connect(b.port(), '127.0.0.1', 5)
  back.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: false, clientId: 'wd1', keepalive: 60, will: will('wd/1'), properties: { sessionExpiryInterval: 60 } })
  await back.next('connack')
  back.end()
  await back.closed
  await connect5(b.url(), { clientId: 'wd1', clean: false, properties: { sessionExpiryInterval: 60 } }, onTestFinished)
  const gone = await RawClient.connect(b.port(), '127.0.0.1', 5)
  gone.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'wd2', keepalive: 60, will: will('wd/2'), properties: { sessionExpiryInterval: 60 } })
  await gone.next('connack')
  const t0 = Date.now()
  gone.end()
  const [m] = await watch.take(1)
  expect(m!.topic).toBe('wd/2')
  expect(Date.now() - t0).toBeGreaterThanOrEqual(900)
  expect(watch.messages.map(x => x.topic)).toEqual(['wd/2'])
})

const HA_SCRIPT = String.raw`
import sys, json, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port = int(sys.argv[1])
n = int(sys.argv[2])
got = {}
done = threading.Event()
connected = threading.Event()
result = {}
def on_connect(c, u, flags, rc, props=None):
    result['rc'] = rc.value if hasattr(rc, 'value') else rc
    result['session_present'] = flags.get('session present')
    connected.set()
def on_message(c, u, m):
    if m.topic.startswith('homeassistant/'):
        got[m.topic] = m.retain
        if len(got) == n: done.set()
c = mqtt.Client(client_id='home-assistant-1', protocol=mqtt.MQTTv5)
c.on_connect = on_connect
c.on_message = on_message
p = Properties(PacketTypes.CONNECT)
p.SessionExpiryInterval = 3600
c.will_set('homeassistant/status', 'offline', qos=1, retain=True)
c.connect('127.0.0.1', port, keepalive=60, clean_start=True, properties=p)
c.loop_start()
connected.wait(10)
c.publish('homeassistant/status', 'online', qos=1, retain=True).wait_for_publish(10)
c.subscribe('homeassistant/#', qos=1)
ok = done.wait(30)
result['received'] = len(got)
result['all_retained'] = all(v for k, v in got.items() if k != 'homeassistant/status')
c.loop_stop()
c.socket().close()
print(json.dumps(result))
`

test('a Home Assistant-style paho v5 session: clean start with a session expiry, birth and will on homeassistant/status, 1,000 retained discovery configs at subscribe', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}\n')
  onTestFinished(() => b.close())
  const z2m = await connect5(b.url(), { clientId: 'zigbee2mqtt' }, onTestFinished)
  for (let i = 0; i < 1000; i++) {
    z2m.client.publish(`homeassistant/sensor/dev${i}/config`, JSON.stringify({ name: `Sensor ${i}`, state_topic: `zigbee2mqtt/dev${i}` }), { qos: 1, retain: true })
  }
  await z2m.client.publishAsync('barrier/none', '', { qos: 1 })
  const watch = await connect5(b.url(), { clientId: 'status-watch' }, onTestFinished)
  await watch.client.subscribeAsync('homeassistant/status', { qos: 1 })
  const out = await run(PYTHON, ['-c', HA_SCRIPT, String(b.port()), '1001'], { timeoutMs: 40_000 })
  expect(out.stderr).toBe('')
  // 1,000 configs + its own retained birth message
  expect(JSON.parse(out.stdout)).toEqual({ rc: 0, session_present: 0, received: 1001, all_retained: true })
  // birth, then the will when the socket closed without DISCONNECT
  const status = await watch.take(2)
  expect(status.map(m => m.payload)).toEqual(['online', 'offline'])
}, 60_000)

test('server DISCONNECTs carry their reason: 0x8E to a v5 client whose session is taken over, 0x8B at shutdown', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  let closed = false
  onTestFinished(async () => { if (!closed) await b.close() })
  const first = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => first.end())
  first.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'same', keepalive: 60 })
  await first.next('connack')
  const second = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => second.end())
  second.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'same', keepalive: 60 })
  expect((await first.next('disconnect')).reasonCode).toBe(0x8e)
  await second.next('connack')
  const stop = b.close()
  closed = true
  expect((await second.next('disconnect')).reasonCode).toBe(0x8b)
  await stop
})

test('a CONNECT with an Authentication Method gets CONNACK 0x8C (no enhanced authentication configured)', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'scram', keepalive: 60, properties: { authenticationMethod: 'SCRAM-SHA-1' } })
  expect((await c.next('connack')).reasonCode).toBe(0x8c)
  await c.closed
})

test('a v5 session expiry outlives a SIGKILL: still there inside its interval, gone after it', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-v5-')
  onTestFinished(remove)
  const conf = await writeConf(dir, `listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/data\n`)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  for (const [id, expiry] of [['short', 1], ['long', 3600]] as const) {
    const c = await connect5(first.url(), { clientId: id, clean: false, properties: { sessionExpiryInterval: expiry } }, onTestFinished)
    await c.client.subscribeAsync('x/#', { qos: 1 })
    await c.client.endAsync()
  }
  await first.kill('SIGKILL')
  // the short interval must pass while the broker is down (time itself is under test)
  await new Promise(resolve => setTimeout(resolve, 1500))
  const second = await spawnMidge(conf, dir)
  onTestFinished(async () => { await second.kill('SIGKILL') })
  const long = await connect5(second.url(), { clientId: 'long', clean: false, properties: { sessionExpiryInterval: 3600 } }, onTestFinished)
  expect(long.connack.sessionPresent).toBe(true)
  const short = await connect5(second.url(), { clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } }, onTestFinished)
  expect(short.connack.sessionPresent).toBe(false)
}, 60_000)

test('a packet over max_packet_size gets DISCONNECT 0x95 (v5) and closes a 3.1.1 connection', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_packet_size 100\n')
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  await c.next('connack')
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 't', qos: 1 }] })
  expect((await c.next('suback')).granted).toEqual([1])
  c.send({ cmd: 'publish', topic: 't', payload: Buffer.alloc(200), qos: 0 })
  expect((await c.next('disconnect')).reasonCode).toBe(0x95)
  await c.closed
  const old = await RawClient.connect(b.port())
  onTestFinished(() => old.end())
  await old.connectMqtt({ clientId: 'v4' })
  old.send({ cmd: 'publish', topic: 't', payload: Buffer.alloc(200), qos: 0 })
  await old.closed
  expect(old.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('v5 over TLS, WebSocket and secure WebSocket: the CONNACK limits and every property, through a persistent session too', async ({ onTestFinished }) => {
  const certs = makeTestCerts()
  onTestFinished(() => certs.remove())
  const tls = `cafile ${certs.ca}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\n`
  const b = await startTestBroker(`allow_anonymous true\npersistence true\npersistence_location {dir}\n
listener 0 127.0.0.1\nmax_qos 1\n${tls}
listener 0 127.0.0.1\nprotocol websockets\nmax_qos 1\n
listener 0 127.0.0.1\nprotocol websockets\nmax_qos 1\n${tls}`)
  onTestFinished(() => b.close())
  const ca = readFileSync(certs.ca)
  for (const transport of ['tls', 'ws', 'wss'] as const) {
    const url = b.url(transport).replace('127.0.0.1', 'localhost')
    const opts = { clean: false, properties: { sessionExpiryInterval: 300 }, ...(transport === 'ws' ? {} : { ca }) }
    const sub = await connect5(url, { clientId: `sub-${transport}`, ...opts }, onTestFinished)
    expect(sub.connack.properties?.maximumQoS).toBe(1)
    await sub.client.subscribeAsync(`t/${transport}/#`, { qos: 1 })
    await sub.client.endAsync()
    const pub = await connect5(url, { clientId: `pub-${transport}`, ...(transport === 'ws' ? {} : { ca }) }, onTestFinished)
    await pub.client.publishAsync(`t/${transport}/x`, 'v5', { qos: 1, properties: PROPS })
    const back = await connect5(url, { clientId: `sub-${transport}`, ...opts }, onTestFinished)
    const [m] = await back.take(1)
    expect([m!.topic, m!.payload, m!.properties]).toEqual([`t/${transport}/x`, 'v5', PROPS])
  }
})

test('max_topic_alias is per listener: alias 3 is refused (0x94, not routed) where the limit is 2 and used where it is 5', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_topic_alias 2\nlistener 0 127.0.0.1\nmax_topic_alias 5\n')
  onTestFinished(() => b.close())
  const [low, high] = b.broker.bound.map(x => x.address.port)
  const watch = await connect5(`mqtt://127.0.0.1:${high!}`, { clientId: 'alias-watch' }, onTestFinished)
  await watch.client.subscribeAsync('al/#', { qos: 1 })
  for (const [port, id] of [[low!, 'low'], [high!, 'high']] as const) {
    const c = await RawClient.connect(port, '127.0.0.1', 5)
    onTestFinished(() => c.end())
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: id, keepalive: 60 })
    await c.next('connack')
    c.send({ cmd: 'publish', topic: `al/${id}`, payload: Buffer.from(id), qos: 1, messageId: 1, properties: { topicAlias: 3 } })
    if (id === 'low') {
      expect((await c.next('disconnect')).reasonCode).toBe(0x94)
      await c.closed
    } else {
      await c.next('puback')
    }
  }
  const [m] = await watch.take(1)
  expect(m!.topic).toBe('al/high')
  expect(watch.messages.map(x => x.topic)).toEqual(['al/high'])
})
