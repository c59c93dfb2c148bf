import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { subscriber } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

const will = { topic: 'dev/status', payload: Buffer.from('offline'), qos: 1 as const, retain: true }

test('the will is published when the connection drops without DISCONNECT [MQTT-3.1.2-8]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { client: watcher, ...got } = await subscriber(b.url(), 'watch', 'dev/status', 1, onTestFinished)
  const dev = await RawClient.connect(b.port())
  await dev.connectMqtt({ clientId: 'dev', will })
  dev.end() // abnormal: TCP closed, no DISCONNECT
  expect((await got.take(1)).map(m => [m.topic, m.payload, m.qos])).toEqual([['dev/status', 'offline', 1]])
  // and it was retained
  const { client: late, ...gl } = await subscriber(b.url(), 'late', 'dev/status', 1, onTestFinished)
  expect((await gl.take(1)).map(m => [m.payload, m.retain])).toEqual([['offline', true]])
})

test('no will after a clean DISCONNECT [MQTT-3.1.2-10]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { client: watcher, ...got } = await subscriber(b.url(), 'watch', 'dev/#', 1, onTestFinished)
  const dev = await RawClient.connect(b.port())
  await dev.connectMqtt({ clientId: 'dev', will: { ...will, retain: false } })
  dev.send({ cmd: 'disconnect' })
  await dev.closed
  await watcher.publishAsync('dev/marker', 'm', { qos: 1 })
  await got.take(1)
  expect(got.messages.map(m => m.payload)).toEqual(['m'])
})

test('keepalive: no packet for 1.5x keepalive closes the connection and fires the will [MQTT-3.1.2-24]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { client: watcher, ...got } = await subscriber(b.url(), 'watch', 'dev/status', 1, onTestFinished)
  const dev = await RawClient.connect(b.port())
  const t0 = Date.now()
  await dev.connectMqtt({ clientId: 'dev', keepalive: 1, will: { ...will, retain: false } })
  await dev.closed
  const elapsed = Date.now() - t0
  expect(elapsed).toBeGreaterThanOrEqual(1400)
  expect(elapsed).toBeLessThan(4000)
  expect((await got.take(1)).map(m => m.payload)).toEqual(['offline'])
})

test('keepalive: PINGREQ within the interval keeps the connection open', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const dev = await RawClient.connect(b.port())
  onTestFinished(() => dev.end())
  await dev.connectMqtt({ clientId: 'pinger', keepalive: 1 })
  for (let i = 0; i < 4; i++) {
    await new Promise(resolve => setTimeout(resolve, 700)) // the client's own keepalive timer: this is the behaviour under test
    await dev.ping()
  }
  expect(dev.socket.destroyed).toBe(false)
})

test('the will of a client taken over is published (the old connection ended abnormally)', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { client: watcher, ...got } = await subscriber(b.url(), 'watch', 'dev/status', 1, onTestFinished)
  const first = await RawClient.connect(b.port())
  await first.connectMqtt({ clientId: 'same', will: { ...will, retain: false } })
  const second = await RawClient.connect(b.port())
  onTestFinished(() => second.end())
  await second.connectMqtt({ clientId: 'same' })
  await first.closed
  expect((await got.take(1)).map(m => m.payload)).toEqual(['offline'])
})
