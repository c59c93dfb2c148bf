import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, collect } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

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
