/**
 * MQTT 5 Will Delay Interval across a restart (LevelDB, src/persistence/will-delay.ts): a client with a delayed
 * will goes away without DISCONNECT, then Midge is stopped (SIGTERM) or killed (SIGKILL) before the delay ends. After
 * the restart the will comes when the delay, counted from the disconnect, or the session expiry ends, whichever is
 * first; at once if that time passed while Midge was stopped; never if the session came back. The broker is a real
 * child process (`npm run build` first).
 */
import { test, expect } from 'vitest'
import mqtt, { type IPublishPacket } from 'mqtt'
import { tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { spawnMidge, writeConf, type MidgeProcess } from '../helpers/processes.js'

const CONF = `listener 0 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/data
`
/** How far the will may come after its due time (restart and delivery on a busy machine). */
const LATE_MS = 1500
const WILL_PROPS = { contentType: 'text/plain', userProperties: { site: 'shed' } }

interface Arrival { at: number, packet: IPublishPacket }

/** A device with a delayed will that loses its connection; resolves with the time it went away. */
async function deviceGoesAway (m: MidgeProcess, id: string, willDelayS: number, sessionExpiryS: number): Promise<number> {
  const dev = await RawClient.connect(m.ports[0]!, '127.0.0.1', 5)
  dev.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 5,
    clean: true,
    clientId: id,
    keepalive: 60,
    will: { topic: `wd/${id}`, payload: Buffer.from(`${id} gone`), qos: 1, retain: false, properties: { willDelayInterval: willDelayS, ...WILL_PROPS } },
    properties: { sessionExpiryInterval: sessionExpiryS }
  })
  expect((await dev.next('connack')).reasonCode).toBe(0)
  const logged = m.waitFor(new RegExp(`Will of ${id} delayed until`))
  dev.end() // no DISCONNECT
  const at = Date.now()
  await logged
  return at
}

/** A live v5 subscriber to wd/#: every will that arrives, with its arrival time. */
async function watch (m: MidgeProcess, onFinished: (fn: () => Promise<void>) => void): Promise<{ got: Arrival[], next: () => Promise<Arrival> }> {
  const c = await mqtt.connectAsync(m.url(), { protocolVersion: 5, clientId: 'watch', reconnectPeriod: 0 })
  onFinished(async () => { await c.endAsync(true) })
  const got: Arrival[] = []
  const waiters: Array<(a: Arrival) => void> = []
  c.on('message', (_t, _p, packet) => {
    const a = { at: Date.now(), packet }
    got.push(a)
    waiters.shift()?.(a)
  })
  await c.subscribeAsync('wd/#', { qos: 1 })
  let taken = 0
  const next = (): Promise<Arrival> => new Promise(resolve => {
    if (got.length > taken) resolve(got[taken++]!)
    else waiters.push(a => { taken++; resolve(a) })
  })
  return { got, next }
}

for (const [signal, willDelayS, sessionExpiryS] of [['SIGTERM', 6, 60], ['SIGKILL', 60, 6]] as const) {
  const first = willDelayS < sessionExpiryS ? 'will delay' : 'session expiry'
  test(`${signal} during the delay: after the restart the will comes when the ${first} ends, counted from the disconnect`, async ({ onTestFinished }) => {
    const { dir, remove } = await tempDir()
    onTestFinished(remove)
    const conf = await writeConf(dir, CONF)
    const one = await spawnMidge(conf, dir)
    onTestFinished(async () => { await one.kill('SIGKILL') })
    const gone = await deviceGoesAway(one, 'dev', willDelayS, sessionExpiryS)
    expect((await one.kill(signal)).signal).toBe(signal === 'SIGKILL' ? 'SIGKILL' : null)
    const two = await spawnMidge(conf, dir)
    onTestFinished(async () => { await two.kill('SIGKILL') })
    const w = await watch(two, onTestFinished)
    const due = gone + Math.min(willDelayS, sessionExpiryS) * 1000
    // the watcher is in before the will is due: a will published at start-up would have been missed, not early
    expect(Date.now()).toBeLessThan(due)
    const a = await w.next()
    expect(a.at).toBeGreaterThanOrEqual(due - 100)
    expect(a.at).toBeLessThan(due + LATE_MS)
    expect([a.packet.topic, a.packet.payload.toString(), a.packet.qos, a.packet.properties?.contentType, a.packet.properties?.userProperties]).toEqual(['wd/dev', 'dev gone', 1, 'text/plain', { site: 'shed' }])
    expect(w.got).toHaveLength(1)
  })
}

test('a delay that ended while Midge was stopped: the will is published at start-up (to a waiting persistent session)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const one = await spawnMidge(conf, dir)
  onTestFinished(async () => { await one.kill('SIGKILL') })
  const keeper = await mqtt.connectAsync(one.url(), { protocolVersion: 5, clientId: 'keeper', clean: false, properties: { sessionExpiryInterval: 300 }, reconnectPeriod: 0 })
  await keeper.subscribeAsync('wd/#', { qos: 1 })
  await keeper.endAsync()
  const gone = await deviceGoesAway(one, 'short', 2, 60)
  await one.kill('SIGKILL')
  // the time stopped is what is under test: the broker stays down past the due time
  await new Promise(resolve => setTimeout(resolve, gone + 2500 - Date.now()))
  const two = await spawnMidge(conf, dir)
  onTestFinished(async () => { await two.kill('SIGKILL') })
  await two.logged(/Publishing the will of short: its delay ended while the broker was stopped/)
  const back = mqtt.connect(two.url(), { protocolVersion: 5, clientId: 'keeper', clean: false, properties: { sessionExpiryInterval: 300 }, reconnectPeriod: 0 })
  onTestFinished(async () => { await back.endAsync(true) })
  const [topic, payload, packet] = await new Promise<[string, Buffer, IPublishPacket]>(resolve => back.once('message', (t, p, pk) => resolve([t, p, pk])))
  expect([topic, payload.toString(), packet.properties?.contentType]).toEqual(['wd/short', 'short gone', 'text/plain'])
})

test('the session comes back after the restart, before the delay ends: no will', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const one = await spawnMidge(conf, dir)
  onTestFinished(async () => { await one.kill('SIGKILL') })
  const gone = await deviceGoesAway(one, 'back', 4, 60)
  await one.kill('SIGTERM')
  const two = await spawnMidge(conf, dir)
  onTestFinished(async () => { await two.kill('SIGKILL') })
  const w = await watch(two, onTestFinished)
  const dev = await mqtt.connectAsync(two.url(), { protocolVersion: 5, clientId: 'back', clean: false, properties: { sessionExpiryInterval: 60 }, reconnectPeriod: 0 })
  onTestFinished(async () => { await dev.endAsync(true) })
  expect(Date.now()).toBeLessThan(gone + 4000)
  // past the due time (what is under test), then a marker through the same subscription
  await new Promise(resolve => setTimeout(resolve, gone + 4000 + LATE_MS - Date.now()))
  await dev.publishAsync('wd/marker', 'm', { qos: 1 })
  const a = await w.next()
  expect(w.got.map(g => g.packet.topic)).toEqual(['wd/marker'])
  expect(a.packet.payload.toString()).toBe('m')
})
