/**
 * Durability: what Midge acknowledged survives SIGKILL and a graceful restart. The broker is a real child
 * process (`node dist/main.js`; run `npm run build` first) restarted on the same persistence_location.
 */
import { test, expect } from 'vitest'
import { tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { connect, collect, until, type Received } from '../helpers/mqtt.js'
import { spawnMidge, writeConf, type MidgeProcess } from '../helpers/processes.js'

const CONF = `listener 0 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/data
log_type all
`

const N1 = 300
const N2 = 300

/** Queues N1 QoS 1 + N2 QoS 2 messages and two retained ones for the offline persistent session `keeper`. */
async function fillWhileOffline (m: MidgeProcess): Promise<void> {
  const keeper = await connect(m.url(), { clientId: 'keeper', clean: false })
  const granted = await keeper.subscribeAsync('q/#', { qos: 2 })
  expect(granted.map(g => g.qos)).toEqual([2])
  await keeper.endAsync()

  const pub = await connect(m.url(), { clientId: 'pub', clean: true })
  const twos: Array<Promise<unknown>> = []
  for (let i = 0; i < N2; i++) twos.push(pub.publishAsync('q/two', `b-${i}`, { qos: 2 }))
  twos.push(pub.publishAsync('r/two', 'kept-2', { qos: 2, retain: true }))
  await Promise.all(twos)
  // then a burst of QoS 1: aedes sends each PUBACK before it stores the message, so the last PUBACKs leave while
  // the store writes are still queued; the kill lands in that window (without the journal this loses messages)
  const ones: Array<Promise<unknown>> = []
  for (let i = 0; i < N1; i++) ones.push(pub.publishAsync('q/one', `a-${i}`, { qos: 1 }))
  ones.push(pub.publishAsync('r/one', 'kept-1', { qos: 1, retain: true }))
  // every PUBACK / PUBCOMP is in: from here on, all of it is Midge's promise
  await Promise.all(ones)
  pub.end(true)
}

async function checkRestored (m: MidgeProcess): Promise<void> {
  const keeper = await connect(m.url(), { clientId: 'keeper', clean: false })
  const got = collect(keeper).messages
  try {
    // the session came back
    expect(keeper.sessionPresent).toBe(true)
    const distinct = (t: string) => new Set(got.filter(g => g.topic === t).map(g => g.payload)).size
    await until(keeper, got, g => distinct('q/one') >= N1 && g.filter(x => x.topic === 'q/two').length >= N2, `${N1} + ${N2} queued messages`)

    // the subscription still routes new messages; `end` arrives after everything queued before it
    const pub = await connect(m.url(), { clientId: 'pub2', clean: true })
    await pub.publishAsync('q/two', 'end', { qos: 2 })
    await until(keeper, got, g => g.some(x => x.payload === 'end'), 'the new message')

    // QoS 1: every payload, in order (duplicates allowed, flagged DUP)
    const ones = got.filter(g => g.topic === 'q/one')
    const firsts: string[] = []
    const seen = new Set<string>()
    for (const g of ones) {
      if (seen.has(g.payload)) continue
      seen.add(g.payload)
      firsts.push(g.payload)
    }
    expect(firsts).toEqual(Array.from({ length: N1 }, (_, i) => `a-${i}`))
    // QoS 2: exactly once, in order
    const twos = got.filter(g => g.topic === 'q/two').map(g => g.payload)
    expect(twos).toEqual([...Array.from({ length: N2 }, (_, i) => `b-${i}`), 'end'])
    expect(got.every(g => g.qos === (g.topic === 'q/one' ? 1 : 2))).toBe(true)

    // retained messages are all there
    const late = await connect(m.url(), { clientId: 'late', clean: true })
    const lateGot = collect(late).messages
    await late.subscribeAsync('r/#', { qos: 2 })
    await until(late, lateGot, g => g.length >= 2, 'two retained messages')
    expect(lateGot.map(g => [g.topic, g.payload, g.retain]).sort()).toEqual([['r/one', 'kept-1', true], ['r/two', 'kept-2', true]])
    await late.endAsync()
    await pub.endAsync()
  } finally {
    await keeper.endAsync(true)
  }
}

for (const [signal, sync] of [['SIGKILL', false], ['SIGTERM', false], ['SIGKILL', true]] as const) {
  test(`QoS 1/2 messages queued for an offline session, retained messages and subscriptions survive ${signal}${sync ? ' (persistence_sync true)' : ''}`, async ({ onTestFinished }) => {
    const { dir, remove } = await tempDir('midge-persist-')
    onTestFinished(remove)
    const conf = await writeConf(dir, CONF + (sync ? 'persistence_sync true\n' : ''))
    const first = await spawnMidge(conf, dir)
    onTestFinished(async () => { await first.kill('SIGKILL') })
    await fillWhileOffline(first)
    const { code, signal: sig } = await first.kill(signal)
    if (signal === 'SIGKILL') expect(sig).toBe('SIGKILL')
    else expect(code).toBe(0)

    const second = await spawnMidge(conf, dir)
    onTestFinished(async () => { await second.kill('SIGKILL') })
    await checkRestored(second)
  }, 90_000)
}

test('a persistent subscription survives SIGKILL right after its SUBACK', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-persist-')
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  const sub = await connect(first.url(), { clientId: 'subber', clean: false })
  sub.on('error', () => {})
  const granted = await sub.subscribeAsync('s/#', { qos: 1 })
  expect(granted.map(g => g.qos)).toEqual([1])
  // no DISCONNECT, no grace: the process dies as soon as the SUBACK is in
  expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL')
  sub.end(true)

  const second = await spawnMidge(conf, dir)
  onTestFinished(async () => { await second.kill('SIGKILL') })
  const pub = await connect(second.url(), { clientId: 'pub', clean: true })
  await pub.publishAsync('s/x', 'routed', { qos: 1 })
  await pub.endAsync()
  const got: Received[] = []
  const back = await connect(second.url(), { clientId: 'subber', clean: false, got })
  onTestFinished(() => back.endAsync(true))
  expect(back.sessionPresent).toBe(true)
  await until(back, got, g => g.length >= 1, 'the queued message')
  expect(got.map(g => [g.topic, g.payload, g.qos])).toEqual([['s/x', 'routed', 1]])
}, 60_000)

test('QoS 1/2 messages in flight to a subscriber (sent, not acknowledged) are sent again with DUP after SIGKILL', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-persist-')
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  // a raw subscriber that receives but never acknowledges
  const raw = await RawClient.connect(first.ports[0]!)
  expect((await raw.connectMqtt({ clientId: 'holder', clean: false })).returnCode).toBe(0)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'f/#', qos: 2 }] })
  await raw.next('suback')
  const pub = await connect(first.url(), { clientId: 'pub', clean: true })
  await pub.publishAsync('f/one', 'q1', { qos: 1 })
  await pub.publishAsync('f/two', 'q2', { qos: 2 })
  const sent = [await raw.next('publish'), await raw.next('publish')]
  expect(sent.map(p => [p.topic, p.payload.toString(), p.qos, p.dup])).toEqual([['f/one', 'q1', 1, false], ['f/two', 'q2', 2, false]])
  pub.end(true)
  expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL')
  raw.end()

  const second = await spawnMidge(conf, dir)
  onTestFinished(async () => { await second.kill('SIGKILL') })
  const again = await RawClient.connect(second.ports[0]!)
  onTestFinished(() => again.end())
  const connack = await again.connectMqtt({ clientId: 'holder', clean: false })
  expect([connack.returnCode, connack.sessionPresent]).toEqual([0, true])
  const resent = [await again.next('publish'), await again.next('publish')]
  expect(resent.map(p => [p.topic, p.payload.toString(), p.qos, p.dup])).toEqual([['f/one', 'q1', 1, true], ['f/two', 'q2', 2, true]])
  again.send({ cmd: 'puback', messageId: resent[0]!.messageId })
  again.send({ cmd: 'pubrec', messageId: resent[1]!.messageId })
  expect((await again.next('pubrel')).messageId).toBe(resent[1]!.messageId)
  again.send({ cmd: 'pubcomp', messageId: resent[1]!.messageId })
  await again.ping()
  expect(again.packets.filter(p => p.cmd === 'publish')).toEqual([])
}, 60_000)
