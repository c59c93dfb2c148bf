import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, collect } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'
import mqttPacket from 'mqtt-packet'

const mqttPublish = (topic: string, qos: number, messageId: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) } as mqttPacket.Packet)

test('a persistent session keeps subscriptions and queues QoS 1/2 while offline, in order; session present = 1 [MQTT-3.1.2-4]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const dev = await connect(b.url(), { clientId: 'device-7', clean: false }, onTestFinished)
  await dev.subscribeAsync('device-7/commands', { qos: 1 })
  await dev.endAsync()
  const app = await connect(b.url(), { clientId: 'app' }, onTestFinished)
  for (let i = 0; i < 30; i++) await app.publishAsync('device-7/commands', `cmd${i}`, { qos: (i % 2 + 1) as 1 | 2 })
  await app.publishAsync('device-7/commands', 'qos0-not-queued', { qos: 0 })
  const again = await RawClient.connect(b.port())
  onTestFinished(() => again.end())
  const ack = await again.connectMqtt({ clientId: 'device-7', clean: false })
  expect([ack.returnCode, ack.sessionPresent]).toEqual([0, true])
  const got: string[] = []
  for (let i = 0; i < 30; i++) {
    const p = await again.next('publish')
    expect(p.qos).toBe(1)
    got.push(p.payload.toString())
    again.send({ cmd: 'puback', messageId: p.messageId })
  }
  expect(got).toEqual([...Array(30).keys()].map(i => `cmd${i}`))
  await again.ping()
  expect(again.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('clean session discards the previous session: session present = 0 and nothing queued [MQTT-3.1.2-6]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const dev = await connect(b.url(), { clientId: 'd', clean: false }, onTestFinished)
  await dev.subscribeAsync('d/in', { qos: 1 })
  await dev.endAsync()
  const app = await connect(b.url(), { clientId: 'app' }, onTestFinished)
  await app.publishAsync('d/in', 'lost', { qos: 1 })
  const clean = await RawClient.connect(b.port())
  const ack = await clean.connectMqtt({ clientId: 'd', clean: true })
  expect([ack.returnCode, ack.sessionPresent]).toEqual([0, false])
  await clean.ping()
  expect(clean.packets.filter(p => p.cmd === 'publish')).toEqual([])
  clean.end()
  await clean.closed
  // and the old subscription is gone: a new persistent session starts empty
  const fresh = await RawClient.connect(b.port())
  onTestFinished(() => fresh.end())
  expect((await fresh.connectMqtt({ clientId: 'd', clean: false })).sessionPresent).toBe(false)
})

test('session present = 0 for a new persistent session [MQTT-3.2.2-3]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  expect((await c.connectMqtt({ clientId: 'new', clean: false })).sessionPresent).toBe(false)
})

test('persistent subscriber receives live traffic after reconnecting and keeps its subscription QoS', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const first = await connect(b.url(), { clientId: 'p', clean: false }, onTestFinished)
  await first.subscribeAsync('t/#', { qos: 2 })
  await first.endAsync()
  const second = await connect(b.url(), { clientId: 'p', clean: false }, onTestFinished)
  const got = collect(second)
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('t/1', 'live', { qos: 2 })
  expect((await got.take(1)).map(m => [m.topic, m.payload, m.qos])).toEqual([['t/1', 'live', 2]])
})

test('a returning persistent session gets its CONNACK before any message routed to it while it reconnects [MQTT-3.2.0-1]', async ({ onTestFinished }) => {
  // aedes restores the session's subscriptions (LevelDB round trips) before it writes the CONNACK, and writes to a
  // client that is still connecting: messages routed in that gap went out before the CONNACK (broker/delivery/connack-first.ts)
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}\nmax_inflight_messages 0\n')
  onTestFinished(() => b.close())
  for (let i = 0; i < 5; i++) {
    const dev = await RawClient.connect(b.port())
    await dev.connectMqtt({ clientId: 'roamer', clean: false })
    dev.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/0', qos: 0 }, { topic: 'r/1', qos: 1 }, { topic: `r/x${i}`, qos: 1 }] })
    await dev.next('suback')
    dev.end()
    await dev.closed
  }
  const pub = await RawClient.connect(b.port())
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'pub' })
  const streaming = new AbortController()
  let id = 0
  const stream = (async () => {
    while (!streaming.signal.aborted) {
      pub.write(Buffer.concat(Array.from({ length: 20 }, (_, k) => mqttPublish(k % 2 === 0 ? 'r/0' : 'r/1', k % 2, ++id % 65535 || 1))))
      await pub.ping()
    }
  })()
  const firsts: number[] = []
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.connect(b.port())
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'roamer', keepalive: 0 })
    const ack = await c.next('connack')
    expect([ack.returnCode, ack.sessionPresent]).toEqual([0, true])
    await c.ping()
    firsts.push(c.received[0]![0]!)
    c.end()
    await c.closed
  }
  streaming.abort()
  await stream
  expect(firsts).toEqual(Array(20).fill(0x20)) // every connection's first byte is a CONNACK's
})
