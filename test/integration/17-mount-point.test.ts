/**
 * mount_point: the same scenario against Midge and Debian's mosquitto 2.0.11, with MQTT.js clients on a mounted
 * listener (A, `mount_point site1/`) and a plain one (B).
 */
import { test, expect } from 'vitest'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { spawnMosquitto, freePort } from '../helpers/processes.js'
import { connect, collect, barrier } from '../helpers/mqtt.js'
import type { OnTestFinishedHandler } from 'vitest'
import mqtt from 'mqtt'

type Fin = (fn: OnTestFinishedHandler) => void

/** What the clients saw: [who, topic, payload, retain]. */
async function scenario (urlA: string, urlB: string, fin: Fin): Promise<{ seen: Array<[string, string, string, boolean]>, afterUnsubscribe: string[] }> {
  const seen: Array<[string, string, string, boolean]> = []
  const onB = await connect(urlB, { clientId: 'watch-b' }, fin)
  const gotB = collect(onB)
  await onB.subscribeAsync('#', { qos: 1 })
  // a retained message under the mount point, published from outside, and one elsewhere
  await onB.publishAsync('site1/r', 'retained', { qos: 1, retain: true })
  await onB.publishAsync('elsewhere/r', 'retained elsewhere', { qos: 1, retain: true })
  // a persistent session on A
  const a1 = await connect(urlA, { clientId: 'mounted', clean: false }, fin)
  const gotA1 = collect(a1)
  await a1.subscribeAsync(['#'], { qos: 1 })
  await gotA1.take(1)
  await onB.publishAsync('site1/live', 'to A', { qos: 1 })
  await onB.publishAsync('other/live', 'not to A', { qos: 1 })
  await gotA1.take(2)
  // A's own publish reaches B under the prefix, and A itself (its # matches it)
  await a1.publishAsync('from/a', 'up', { qos: 1 })
  for (const m of await gotA1.take(3)) seen.push(['A', m.topic, m.payload, m.retain])
  await a1.endAsync()
  // queued while A is offline, delivered on reconnect
  await onB.publishAsync('site1/queued', 'while away', { qos: 1 })
  // the collector is attached before CONNECT: the queued message may arrive in the CONNACK's own TCP segment
  const a2 = mqtt.connect(urlA, { clientId: 'mounted', clean: false, reconnectPeriod: 0 })
  fin(async () => { await a2.endAsync(true) })
  const gotA2 = collect(a2)
  await new Promise<void>((resolve, reject) => { a2.once('connect', () => resolve()); a2.once('error', reject) })
  for (const m of await gotA2.take(1)) seen.push(['A', m.topic, m.payload, m.retain])
  // unsubscribe with the filter as the client knows it
  await a2.unsubscribeAsync('#')
  await onB.publishAsync('site1/after-unsubscribe', 'x', { qos: 1 })
  await barrier(a2)
  const afterUnsubscribe = gotA2.messages.slice(1).map(m => m.payload)
  await a2.endAsync()
  await barrier(onB)
  for (const m of gotB.messages) if (m.topic.includes('from') || m.topic.includes('queued')) seen.push(['B', m.topic, m.payload, m.retain])
  return { seen, afterUnsubscribe }
}

const EXPECTED: Array<[string, string, string, boolean]> = [
  ['A', 'r', 'retained', true],
  ['A', 'live', 'to A', false],
  ['A', 'from/a', 'up', false],
  ['A', 'queued', 'while away', false],
  ['B', 'site1/from/a', 'up', false],
  ['B', 'site1/queued', 'while away', false]
]

test.for([['memory', 'persistence false'], ['LevelDB', 'persistence true\npersistence_location {dir}/data']])('Midge (%s store): a mounted listener sees only its subtree, without the prefix', async ([, store], { onTestFinished }) => {
  const b = await startTestBroker(`${store}\nallow_anonymous true\nlistener 0 127.0.0.1\nmount_point site1/\nlistener 0 127.0.0.1\n`)
  onTestFinished(() => b.close())
  const [a, plain] = b.broker.bound.map(x => `mqtt://127.0.0.1:${x.address.port}`)
  expect(await scenario(a!, plain!, onTestFinished)).toEqual({ seen: EXPECTED, afterUnsubscribe: [] })
})

// mosquitto 2.0.11 adds the prefix to PUBLISH and SUBSCRIBE but does not take it off what it sends, against its own
// manual ("This prefix is removed when any messages are sent to the client"; 2.0.12 fixed that), and does not add it
// to UNSUBSCRIBE, so the subscription stays (the message after it and the barrier's). Everything else matches.
test('Debian\'s mosquitto 2.0.11 gives the same, but for its two mount_point bugs', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const [pa, pb] = [await freePort(), await freePort()]
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, `log_dest stderr\nallow_anonymous true\nlistener ${pa} 127.0.0.1\nmount_point site1/\nlistener ${pb} 127.0.0.1\n`)
  const m = await spawnMosquitto(conf)
  onTestFinished(() => m.stop())
  expect(await scenario(`mqtt://127.0.0.1:${pa}`, `mqtt://127.0.0.1:${pb}`, onTestFinished)).toEqual({
    seen: EXPECTED.map(([who, topic, ...rest]) => [who, who === 'A' ? `site1/${topic}` : topic, ...rest]),
    afterUnsubscribe: ['x', '']
  })
})

test('a will from a mounted client is published under the mount point', async ({ onTestFinished }) => {
  const b = await startTestBroker('allow_anonymous true\nlistener 0 127.0.0.1\nmount_point site1/\nlistener 0 127.0.0.1\n')
  onTestFinished(() => b.close())
  const [a, plain] = b.broker.bound.map(x => `mqtt://127.0.0.1:${x.address.port}`)
  const watcher = await connect(plain!, { clientId: 'w' }, onTestFinished)
  const got = collect(watcher)
  await watcher.subscribeAsync('site1/#', { qos: 1 })
  const dying = await connect(a!, { clientId: 'dying', will: { topic: 'status', payload: Buffer.from('gone'), qos: 1, retain: false } })
  const closed = once(dying.stream, 'close')
  dying.stream.destroy()
  await closed
  expect((await got.take(1)).map(m => [m.topic, m.payload])).toEqual([['site1/status', 'gone']])
})
