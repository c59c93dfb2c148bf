import { test, expect } from 'vitest'
import mqtt from 'mqtt'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'

const CONNACK = (code: number, sp = 0) => Buffer.from([0x20, 0x02, sp, code])

async function rawBytes (c: RawClient): Promise<Buffer> {
  await c.closed.catch(() => {})
  return Buffer.concat(c.received)
}

test('CONNACK 0 with session present 0 for a clean session [MQTT-3.2.2-1]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'c1', keepalive: 30 })
  await c.next('connack')
  expect(Buffer.concat(c.received).subarray(0, 4)).toEqual(CONNACK(0))
})

test('zero-length client id with clean session is accepted and gets an id [MQTT-3.1.3-6]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  const ack = await c.connectMqtt({ clientId: '', clean: true })
  expect(ack).toMatchObject({ cmd: 'connack', returnCode: 0 })
})

test('zero-length client id without clean session is refused with CONNACK 2 [MQTT-3.1.3-8]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  // mqtt-packet refuses to generate this, so write the bytes: CONNECT, MQTT, v4, flags 0 (clean=0), keepalive 60, id ''
  c.write([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0])
  expect(await rawBytes(c)).toEqual(CONNACK(2))
})

test('unacceptable protocol level gets CONNACK 1 and the connection closes, as from mosquitto [MQTT-3.1.2-2]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  c.write([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 9, 0x02, 0, 60, 0, 1, 0x61])
  expect(await rawBytes(c)).toEqual(CONNACK(1))
})

test('keepalive above max_keepalive is refused with CONNACK 2, as mosquitto 2.0 does for 3.1.1', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_keepalive 60\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  const ack = await c.connectMqtt({ clientId: 'ka', keepalive: 61 })
  expect(ack.returnCode).toBe(2)
  await c.closed
  const ok = await RawClient.connect(b.port())
  onTestFinished(() => ok.end())
  expect((await ok.connectMqtt({ clientId: 'ka2', keepalive: 60 })).returnCode).toBe(0)
})

test('allow_anonymous false refuses a client without credentials with CONNACK 5', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous false\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'anon', keepalive: 60 })
  expect(await rawBytes(c)).toEqual(CONNACK(5))
})

test('a password without a user name is malformed: CONNACK 4', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  // flags 0x42: password flag + clean session, no username flag
  c.write([0x10, 17, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x42, 0, 60, 0, 1, 0x61, 0, 2, 0x70, 0x77])
  expect(await rawBytes(c)).toEqual(CONNACK(4))
})

test('MQTT 3.1 (MQIsdp) clients connect', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await mqtt.connectAsync(b.url(), { protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'old31', reconnectPeriod: 0 })
  onTestFinished(() => c.endAsync())
  await c.subscribeAsync('x/y', { qos: 1 })
  const got = new Promise<string>(resolve => c.on('message', (_t, p) => resolve(p.toString())))
  await c.publishAsync('x/y', 'from 3.1', { qos: 1 })
  expect(await got).toBe('from 3.1')
})

test('client takeover: the same client id closes the older connection [MQTT-3.1.4-2]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const first = await RawClient.connect(b.port())
  await first.connectMqtt({ clientId: 'dup' })
  const second = await RawClient.connect(b.port())
  onTestFinished(() => second.end())
  expect((await second.connectMqtt({ clientId: 'dup' })).returnCode).toBe(0)
  await first.closed
  await second.ping()
})

test('a CONNECT that is not the first packet closes the connection, others are unaffected', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const good = await RawClient.connect(b.port())
  onTestFinished(() => good.end())
  await good.connectMqtt({ clientId: 'good' })
  const bad = await RawClient.connect(b.port())
  bad.send({ cmd: 'pingreq' })
  expect(await rawBytes(bad)).toEqual(Buffer.alloc(0))
  await good.ping()
})

test('a second CONNECT is a protocol violation and closes the connection [MQTT-3.1.0-2]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  await c.connectMqtt({ clientId: 'twice' })
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'twice', keepalive: 60 })
  await c.closed
})

test('a silent TCP client is closed after connect_timeout', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nconnect_timeout 1\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  const t0 = Date.now()
  await c.closed
  const waited = Date.now() - t0
  expect(waited).toBeGreaterThanOrEqual(900)
  expect(waited).toBeLessThan(5000)
})

test('malformed remaining length closes that connection; other clients keep working', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const good = await mqtt.connectAsync(b.url(), { clientId: 'good', reconnectPeriod: 0 })
  onTestFinished(() => good.endAsync())
  const bad = await RawClient.connect(b.port())
  bad.write([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])
  await bad.closed
  await good.subscribeAsync('still/here')
  const got = new Promise<string>(resolve => good.on('message', (_t, p) => resolve(p.toString())))
  await good.publishAsync('still/here', 'yes')
  expect(await got).toBe('yes')
})

test('garbage after CONNECT closes only that connection', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const good = await RawClient.connect(b.port())
  onTestFinished(() => good.end())
  await good.connectMqtt({ clientId: 'good' })
  const bad = await RawClient.connect(b.port())
  await bad.connectMqtt({ clientId: 'bad' })
  bad.write([0x00, 0x00]) // packet type 0 is reserved
  await bad.closed
  await good.ping()
})

test('a publish over message_size_limit closes the connection and is not delivered', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 100\n')
  onTestFinished(() => b.close())
  const sub = await RawClient.connect(b.port())
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'sub' })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'big/#', qos: 0 }] })
  await sub.next('suback')
  const pub = await RawClient.connect(b.port())
  await pub.connectMqtt({ clientId: 'pub' })
  pub.send({ cmd: 'publish', topic: 'big/ok', payload: Buffer.alloc(100, 1), qos: 0 })
  pub.send({ cmd: 'publish', topic: 'big/no', payload: Buffer.alloc(101, 1), qos: 0 })
  await pub.closed
  await sub.ping()
  const got = sub.packets.filter(p => p.cmd === 'publish').map(p => (p as { topic: string }).topic)
  expect(got).toEqual(['big/ok'])
})

test('a huge remaining length is refused before its payload is buffered', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 1000\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  await c.connectMqtt({ clientId: 'huge' })
  // PUBLISH with remaining length 200,000,000 and only a few bytes of it sent: closed at once, not after 200 MB
  c.write([0x30, 0x80, 0xc2, 0xd7, 0x2f, 0, 1, 0x61])
  await c.closed
})
