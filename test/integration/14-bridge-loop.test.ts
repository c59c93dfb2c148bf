/**
 * No loops, Midge to Midge: a `both` bridge does not bring its own messages back (with the private-bridge flag, and
 * with try_private false through the echo filter), and two Midges bridged to each other do not pass a message back
 * and forth.
 */
import { test, expect } from 'vitest'
import type { OnTestFinishedHandler } from 'vitest'
import { startTestBroker, type TestBroker } from '../helpers/start-broker.js'
import { freePort } from '../helpers/processes.js'
import { connect, subscriber } from '../helpers/mqtt.js'
import { startRemote } from '../helpers/bridge.js'

type Finished = (fn: OnTestFinishedHandler) => void

async function midge (conf: string, onFinished: Finished): Promise<TestBroker> {
  const b = await startTestBroker(conf)
  onFinished(() => b.close())
  return b
}

function connected (b: TestBroker): Promise<void> {
  return expect.poll(() => b.broker.bridges!.view().every(v => v.state === 'connected'), { timeout: 10_000 }).toBe(true)
}

test.for([
  ['with the private-bridge flag', 'true'] as const,
  ['without it (try_private false: the echo filter)', 'false'] as const
])('a both topic to another Midge, %s: each message once on each side', async ([, tryPrivate], { onTestFinished }) => {
  const cloud = await midge('listener 0 127.0.0.1\nallow_anonymous true\n', onTestFinished)
  const pi = await midge([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${cloud.port()}`, 'remote_clientid pi', 'restart_timeout 1',
    `try_private ${tryPrivate}`, 'topic chat/# both 1'
  ].join('\n'), onTestFinished)
  await connected(pi)
  const piSub = await subscriber(pi.url(), 'pi-sub', 'chat/#', 1, onTestFinished)
  const cloudSub = await subscriber(cloud.url(), 'cloud-sub', 'chat/#', 1, onTestFinished)
  const piPub = await connect(pi.url(), { clientId: 'pi-pub' }, onTestFinished)
  const cloudPub = await connect(cloud.url(), { clientId: 'cloud-pub' }, onTestFinished)

  await piPub.publishAsync('chat/a', 'from pi', { qos: 1 })
  expect((await cloudSub.take(1)).map(m => m.topic)).toEqual(['chat/a'])
  await cloudPub.publishAsync('chat/b', 'from cloud', { qos: 1 })
  // an echo of chat/a would have reached the pi before chat/b, and chat/b going back up would reach the cloud before chat/c
  expect((await piSub.take(2)).map(m => m.topic)).toEqual(['chat/a', 'chat/b'])
  await piPub.publishAsync('chat/c', 'from pi', { qos: 1 })
  expect((await cloudSub.take(3)).map(m => m.topic)).toEqual(['chat/a', 'chat/b', 'chat/c'])
  await cloudPub.publishAsync('chat/d', 'from cloud', { qos: 1 })
  expect((await piSub.take(4)).map(m => m.topic)).toEqual(['chat/a', 'chat/b', 'chat/c', 'chat/d'])
  // chat/d reaches the cloud's own subscriber in parallel with the bridge
  await cloudSub.take(4)
  expect([piSub.messages.length, cloudSub.messages.length]).toEqual([4, 4])
  await expect.poll(() => pi.broker.bridges!.view()[0]).toMatchObject({ sent: 2, received: 2, dropped: 0 })
})

test('two Midges bridged to each other on the same topics: no message goes round', async ({ onTestFinished }) => {
  const [portA, portB] = [await freePort(), await freePort()]
  const bridge = (name: string, port: number): string =>
    [`connection ${name}`, `address 127.0.0.1:${port}`, `remote_clientid ${name}`, 'restart_timeout 1', 'topic chat/# out 1'].join('\n')
  const a = await midge(`listener ${portA} 127.0.0.1\nallow_anonymous true\n${bridge('a-to-b', portB)}\n`, onTestFinished)
  const b = await midge(`listener ${portB} 127.0.0.1\nallow_anonymous true\n${bridge('b-to-a', portA)}\n`, onTestFinished)
  await connected(a)
  await connected(b)
  const aSub = await subscriber(a.url(), 'a-sub', 'chat/#', 1, onTestFinished)
  const bSub = await subscriber(b.url(), 'b-sub', 'chat/#', 1, onTestFinished)
  const aPub = await connect(a.url(), { clientId: 'a-pub' }, onTestFinished)
  const bPub = await connect(b.url(), { clientId: 'b-pub' }, onTestFinished)

  await aPub.publishAsync('chat/1', 'from a', { qos: 1 })
  await bPub.publishAsync('chat/2', 'from b', { qos: 1 })
  await aPub.publishAsync('chat/3', 'from a', { qos: 1 })
  await bPub.publishAsync('chat/4', 'from b', { qos: 1 })
  await aSub.take(4)
  await bSub.take(4)
  // a message going round would show in the counters: each bridge sent exactly its side's two
  await expect.poll(() => [a.broker.bridges!.view()[0]!.sent, b.broker.bridges!.view()[0]!.sent]).toEqual([2, 2])
  // a barrier each way: had anything been sent back, it would be here before these
  await aPub.publishAsync('chat/end-a', '', { qos: 1 })
  await bPub.publishAsync('chat/end-b', '', { qos: 1 })
  await aSub.take(6)
  await bSub.take(6)
  expect(aSub.messages.map(m => m.topic).sort()).toEqual(['chat/1', 'chat/2', 'chat/3', 'chat/4', 'chat/end-a', 'chat/end-b'])
  expect(bSub.messages.map(m => m.topic).sort()).toEqual(['chat/1', 'chat/2', 'chat/3', 'chat/4', 'chat/end-a', 'chat/end-b'])
  await expect.poll(() => [a.broker.bridges!.view()[0]!.sent, b.broker.bridges!.view()[0]!.sent]).toEqual([3, 3])
})

test('mosquitto\'s own bridge into Midge: the private-bridge flag is accepted and nothing echoes back', async ({ onTestFinished }) => {
  const cloud = await midge('listener 0 127.0.0.1\nallow_anonymous true\n', onTestFinished)
  const pi = await startRemote(onTestFinished, '', `connection cloud\naddress 127.0.0.1:${cloud.port()}\nremote_clientid mosq-pi\ntopic chat/# both 1\n`)
  await expect.poll(() => pi.daemon.output(), { timeout: 10_000 }).toMatch(/Received CONNACK on connection local\.mosq-pi\./)
  const piSub = await subscriber(pi.url, 'pi-sub', 'chat/#', 1, onTestFinished)
  const cloudSub = await subscriber(cloud.url(), 'cloud-sub', 'chat/#', 1, onTestFinished)
  // mosquitto subscribes on the remote once connected: wait for its subscription to be there
  await expect.poll(async () => {
    const c = await connect(pi.url, { clientId: `probe-${Math.random()}` })
    await c.publishAsync('chat/probe', 'p', { qos: 1 })
    await c.endAsync()
    return cloudSub.messages.some(m => m.topic === 'chat/probe')
  }, { timeout: 10_000 }).toBe(true)
  const cloudPub = await connect(cloud.url(), { clientId: 'cloud-pub' }, onTestFinished)
  await cloudPub.publishAsync('chat/down', 'from cloud', { qos: 1 })
  await expect.poll(() => piSub.messages.map(m => m.topic).filter(t => t === 'chat/down')).toEqual(['chat/down'])
  const piPub = await connect(pi.url, { clientId: 'pi-pub' }, onTestFinished)
  await piPub.publishAsync('chat/up', 'from pi', { qos: 1 })
  await expect.poll(() => cloudSub.messages.map(m => m.topic).filter(t => t === 'chat/up')).toEqual(['chat/up'])
  // a barrier each way, then every message exactly once on each side
  await cloudPub.publishAsync('chat/end', '', { qos: 1 })
  await expect.poll(() => piSub.messages.some(m => m.topic === 'chat/end')).toBe(true)
  const count = (ms: Array<{ topic: string }>, t: string): number => ms.filter(m => m.topic === t).length
  expect([count(piSub.messages, 'chat/up'), count(piSub.messages, 'chat/down'), count(cloudSub.messages, 'chat/up'), count(cloudSub.messages, 'chat/down')]).toEqual([1, 1, 1, 1])
  expect(pi.daemon.output()).not.toMatch(/Connection Refused|unacceptable protocol/i)
})

test('relaying: what mosquitto\'s bridge brings in is sent on by Midge\'s bridge to the cloud (as mosquitto relays), once', { timeout: 30_000 }, async ({ onTestFinished }) => {
  const cloud = await startRemote(onTestFinished)
  const relay = await midge([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${cloud.port}`, 'remote_clientid relay', 'restart_timeout 1', 'topic t/# out 1'
  ].join('\n'), onTestFinished)
  await connected(relay)
  // the Pi: mosquitto with its own bridge into the relay (private-bridge flag, as by default)
  const pi = await startRemote(onTestFinished, '', `connection up\naddress 127.0.0.1:${relay.port()}\nremote_clientid mosq-pi\ntopic t/# out 1\n`)
  await expect.poll(() => pi.daemon.output(), { timeout: 10_000 }).toMatch(/Received CONNACK on connection local\.mosq-pi\./)
  const cloudSub = await subscriber(cloud.url, 'cloud-sub', 't/#', 1, onTestFinished)
  const relaySub = await subscriber(relay.url(), 'relay-sub', 't/#', 1, onTestFinished)
  const piPub = await connect(pi.url, { clientId: 'pi-pub' }, onTestFinished)
  for (let i = 0; i < 3; i++) await piPub.publishAsync(`t/${i}`, `from pi ${i}`, { qos: 1 })
  await cloudSub.take(3)
  await relaySub.take(3)
  // a barrier from the relay itself: anything relayed twice would be here before it
  const relayPub = await connect(relay.url(), { clientId: 'relay-pub' }, onTestFinished)
  await relayPub.publishAsync('t/end', 'end', { qos: 1 })
  await cloudSub.until(g => g.some(m => m.topic === 't/end'), 't/end on the cloud')
  await relaySub.until(g => g.some(m => m.topic === 't/end'), 't/end on the relay')
  expect(cloudSub.messages.map(m => m.payload)).toEqual(['from pi 0', 'from pi 1', 'from pi 2', 'end'])
  expect(relaySub.messages.map(m => m.payload)).toEqual(['from pi 0', 'from pi 1', 'from pi 2', 'end'])
  // counted at the cloud's PUBACK, which may come after its subscriber has the message
  await expect.poll(() => relay.broker.bridges!.view()[0]).toMatchObject({ sent: 4, dropped: 0 })
})
