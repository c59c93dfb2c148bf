/**
 * Retained messages both ways, bridge_outgoing_retain false, notifications_local_only, and the state a clean stop
 * leaves on the remote; against Debian's mosquitto.
 */
import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, collect, subscriber } from '../helpers/mqtt.js'
import { startRemote, bridgeState } from '../helpers/bridge.js'
import { freePort } from '../helpers/processes.js'

test('retained messages keep their flag both ways; a clean stop sets the remote state to 0', async ({ onTestFinished }) => {
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid ret-pi', 'restart_timeout 1',
    'topic up/# out 1', 'topic down/# in 1'
  ].join('\n'))
  let closed = false
  onTestFinished(async () => { if (!closed) await local.close() })
  await bridgeState(remote.url, 'ret-pi', '1', onTestFinished)
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/r', 'kept', { qos: 1, retain: true })
  const rpub = await connect(remote.url, { clientId: 'rpub' }, onTestFinished)
  await rpub.publishAsync('down/r', 'kept too', { qos: 1, retain: true })
  // late subscribers on each side get the other side's message as retained
  await expect.poll(async () => {
    const c = await connect(remote.url, { clientId: `late-${Math.random()}` })
    const got = collect(c)
    await c.subscribeAsync('up/#', { qos: 1 })
    const m = await got.take(1, 1000).catch(() => [])
    await c.endAsync()
    return m.map(x => [x.topic, x.payload, x.retain])
  }, { timeout: 10_000 }).toEqual([['up/r', 'kept', true]])
  await expect.poll(async () => {
    const c = await connect(local.url(), { clientId: `late-${Math.random()}` })
    const got = collect(c)
    await c.subscribeAsync('down/#', { qos: 1 })
    const m = await got.take(1, 1000).catch(() => [])
    await c.endAsync()
    return m.map(x => [x.topic, x.payload, x.retain])
  }, { timeout: 10_000 }).toEqual([['down/r', 'kept too', true]])
  await local.close()
  closed = true
  await bridgeState(remote.url, 'ret-pi', '0', onTestFinished)
  // a clean stop: DISCONNECT, so the state came from the bridge's own publish, not from its will
  expect(remote.daemon.output()).toMatch(/Client ret-pi disconnected\./)
})

test('bridge_outgoing_retain false clears the flag; notifications_local_only keeps the state off the remote', async ({ onTestFinished }) => {
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid noret-pi', 'restart_timeout 1',
    'bridge_outgoing_retain false', 'notifications_local_only true', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const watch = await subscriber(local.url(), 'watch', '$SYS/broker/connection/noret-pi/state', 1, onTestFinished)
  await expect.poll(() => watch.messages.at(-1)?.payload, { timeout: 10_000 }).toBe('1')
  const w = await subscriber(remote.url, 'w', '#', 1, onTestFinished)
  await w.client.subscribeAsync('$SYS/broker/connection/#', { qos: 1 })
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/r', 'not retained there', { qos: 1, retain: true })
  expect((await w.take(1)).map(m => [m.topic, m.retain])).toEqual([['up/r', false]])
  // nothing on the remote's state topic: no retained state, and the publish above was the only message
  expect(w.messages.map(m => m.topic)).toEqual(['up/r'])
  expect(remote.daemon.output()).not.toMatch(/'\$SYS\/broker\/connection\/noret-pi\/state'/)
})

test.for([
  { what: 'local_cleansession true (the default with cleansession true)', extra: [], delivered: 0 },
  { what: 'local_cleansession false', extra: ['local_cleansession false'], delivered: 2 }
])('$what: $delivered of 2 messages queued during an outage reach the remote', async ({ extra, delivered }, { onTestFinished }) => {
  // mosquitto 2.0.11, same settings: none of 2 outage messages arrive with true, both with false
  const port = await freePort()
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid lcs-pi', 'restart_timeout 1', 'cleansession true',
    ...extra, 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const view = () => local.broker.bridges!.view()[0]!
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/1', 'outage 1', { qos: 1 })
  await pub.publishAsync('up/2', 'outage 2', { qos: 1 })
  expect(view()).toMatchObject({ queued: 2, dropped: 0 })
  const remote = await startRemote(onTestFinished, '', '', port)
  await expect.poll(() => view().state, { timeout: 15_000 }).toBe('connected')
  await expect.poll(() => view()).toMatchObject({ queued: 0, sent: delivered, dropped: 2 - delivered })
  // messages published while connected go on either way
  const w = await subscriber(remote.url, 'w', 'up/#', 1, onTestFinished)
  await pub.publishAsync('up/3', 'connected', { qos: 1 })
  expect((await w.take(1)).map(m => m.payload)).toEqual(['connected'])
})
