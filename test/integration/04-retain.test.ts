import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, subscriber } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

test('a retained message reaches a late subscriber with retain=1 [MQTT-3.3.1-6]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('dev1/state', 'on', { qos: 1, retain: true })
  const { client: sub, ...got } = await subscriber(b.url(), 'sub', 'dev1/#', 1, onTestFinished)
  expect(await got.take(1)).toEqual([{ topic: 'dev1/state', payload: 'on', qos: 1, retain: true, dup: false }])
})

test('a newer retained message replaces the older one; live delivery has retain=0 [MQTT-3.3.1-9]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { client: live, ...gl } = await subscriber(b.url(), 'live', 's/t', 1, onTestFinished)
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('s/t', 'v1', { qos: 1, retain: true })
  await pub.publishAsync('s/t', 'v2', { qos: 1, retain: true })
  expect((await gl.take(2)).map(m => [m.payload, m.retain])).toEqual([['v1', false], ['v2', false]])
  const { client: late, ...g } = await subscriber(b.url(), 'late', 's/t', 1, onTestFinished)
  await late.publishAsync('s/end', 'x', { qos: 1 })
  expect((await g.take(1)).map(m => [m.payload, m.retain])).toEqual([['v2', true]])
})

test('an empty retained payload deletes the retained message [MQTT-3.3.1-10]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('gone/x', 'here', { qos: 1, retain: true })
  await pub.publishAsync('kept/x', 'kept', { qos: 1, retain: true })
  await pub.publishAsync('gone/x', '', { qos: 1, retain: true })
  const sub = await RawClient.connect(b.port())
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'sub' })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'gone/#', qos: 0 }, { topic: 'kept/#', qos: 0 }] })
  await sub.next('suback')
  const kept = await sub.next('publish')
  expect([kept.topic, kept.payload.toString(), kept.retain]).toEqual(['kept/x', 'kept', true])
  await sub.ping()
  expect(sub.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('retained messages are sent at min(stored QoS, subscription QoS) for every matching topic', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 50; i++) await pub.publishAsync(`r/${i}`, String(i), { qos: 2, retain: true })
  const { client: sub, ...got } = await subscriber(b.url(), 'sub', 'r/+', 1, onTestFinished)
  const msgs = await got.take(50)
  expect(msgs.map(m => Number(m.payload)).sort((a, b) => a - b)).toEqual([...Array(50).keys()])
  expect(new Set(msgs.map(m => `${m.qos}${m.retain}`))).toEqual(new Set(['1true']))
})

test('retain_available false refuses retained publishes by closing the connection', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nretain_available false\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  await c.connectMqtt({ clientId: 'r' })
  c.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, retain: true })
  await c.closed
  const { client: sub, ...got } = await subscriber(b.url(), 'sub', 'a', 0, onTestFinished)
  await sub.publishAsync('a', 'plain', { qos: 1 })
  expect((await got.take(1)).map(m => [m.payload, m.retain])).toEqual([['plain', false]])
})
