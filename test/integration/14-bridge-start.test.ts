/**
 * start_type lazy (threshold, idle_timeout) and once, and a remote that never acknowledges: local clients go on.
 */
import { test, expect } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { startTestBroker } from '../helpers/start-broker.js'
import { freePort } from '../helpers/processes.js'
import { connect, subscriber } from '../helpers/mqtt.js'
import { startRemote, fakeRemote } from '../helpers/bridge.js'

test('lazy: connects once threshold messages are queued, stops after idle_timeout, starts again', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid lazy-pi', 'start_type lazy', 'threshold 3', 'idle_timeout 1',
    'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const watcher = await subscriber(remote.url, 'watcher', 'up/#', 1, onTestFinished)
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  const view = () => local.broker.bridges!.view()[0]!
  await pub.publishAsync('up/1', '1', { qos: 1 })
  await pub.publishAsync('up/2', '2', { qos: 1 })
  expect(view()).toMatchObject({ state: 'stopped', queued: 2, sent: 0 })
  await pub.publishAsync('up/3', '3', { qos: 1 })
  expect((await watcher.take(3)).map(m => m.payload)).toEqual(['1', '2', '3'])
  // idle for idle_timeout: stopped, and the remote saw the state go to 0 by a clean stop
  await expect.poll(() => view().state, { timeout: 10_000 }).toBe('stopped')
  expect(view()).toMatchObject({ queued: 0, sent: 3, connects: 1 })
  for (const i of [4, 5, 6]) await pub.publishAsync(`up/${i}`, String(i), { qos: 1 })
  expect((await watcher.take(6)).map(m => m.payload)).toEqual(['1', '2', '3', '4', '5', '6'])
  expect(view()).toMatchObject({ connects: 2 })
  expect(remote.daemon.output().match(/New bridge connected from .* as lazy-pi/g)).toHaveLength(2)
})

test('once: a failed first connection is not retried', async ({ onTestFinished }) => {
  const port = await freePort()
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${port}`, 'start_type once', 'restart_timeout 1', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('stopped')
  expect(local.broker.bridges!.view()[0]!.lastError).toMatch(/ECONNREFUSED/)
})

test('a remote that never acknowledges does not hold up local clients', { timeout: 60_000 }, async ({ onTestFinished }) => {
  // takes CONNECT and PUBLISH, answers CONNACK and SUBACK, never PUBACK
  let publishes = 0
  const port = await fakeRemote(4, (p, sock) => {
    if (p.cmd === 'connect') sock.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }))
    if (p.cmd === 'publish' && p.topic.startsWith('up/')) publishes++
    if (p.cmd === 'pingreq') sock.write(mqttPacket.generate({ cmd: 'pingresp' }))
  }, onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true', 'max_inflight_messages 20',
    'connection cloud', `address 127.0.0.1:${port}`, 'try_private false', 'notifications false', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const sub = await subscriber(local.url(), 'sub', 'up/#', 1, onTestFinished)
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  const n = 500
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('up/x', String(i), { qos: 1 })))
  expect((await sub.take(n)).map(m => Number(m.payload))).toEqual(Array.from({ length: n }, (_, i) => i))
  // every local PUBACK and delivery happened while the remote had acknowledged nothing: one window is out, the rest waits
  await expect.poll(() => publishes).toBe(20)
  await expect.poll(() => local.broker.bridges!.view()[0]).toMatchObject({ queued: n, sent: 0 })
})

test('a remote that refuses the private-bridge flag with CONNACK 1 is asked again without it', async ({ onTestFinished }) => {
  const levels: number[] = []
  const port = await fakeRemote(4, (p, sock) => {
    if (p.cmd !== 'connect') return
    const bridge = (p as mqttPacket.IConnectPacket & { bridgeMode?: boolean }).bridgeMode === true
    levels.push(p.protocolVersion! + (bridge ? 0x80 : 0))
    sock.write(mqttPacket.generate({ cmd: 'connack', returnCode: bridge ? 1 : 0, sessionPresent: false }))
    if (bridge) sock.end()
  }, onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true', 'connection cloud', `address 127.0.0.1:${port}`, 'restart_timeout 30', 'notifications false', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  // the second attempt comes at once, not after restart_timeout
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 5_000 }).toBe('connected')
  expect(levels).toEqual([0x84, 0x04])
})

test('several addresses without round_robin: past a dead main address to the next, and back once the main one answers', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const mainPort = await freePort()
  const second = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${mainPort} 127.0.0.1:${second.port}`, 'remote_clientid multi-pi', 'restart_timeout 1', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.remote, { timeout: 10_000 }).toBe(`127.0.0.1:${second.port}`)
  const main = await startRemote(onTestFinished, '', '', mainPort)
  await expect.poll(() => local.broker.bridges!.view()[0]!.remote, { timeout: 15_000 }).toBe(`127.0.0.1:${mainPort}`)
  expect(main.daemon.output()).toMatch(/New bridge connected from .* as multi-pi/)
})

test('MQTT 5: the reason of a DISCONNECT from the remote is kept as the last error', async ({ onTestFinished }) => {
  // mosquitto 2.0.11 closes a taken-over session without DISCONNECT: a remote of our own sends one
  const port = await fakeRemote(5, (p, sock) => {
    if (p.cmd !== 'connect') return
    sock.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent: false }, { protocolVersion: 5 }))
    sock.end(mqttPacket.generate({ cmd: 'disconnect', reasonCode: 142, properties: { reasonString: 'taken over' } }, { protocolVersion: 5 }))
  }, onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true', 'connection cloud', `address 127.0.0.1:${port}`, 'bridge_protocol_version mqttv50',
    'restart_timeout 30', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0], { timeout: 5_000 }).toMatchObject({ state: 'waiting', connects: 1, lastError: 'DISCONNECT reason 142 (taken over)' })
})
