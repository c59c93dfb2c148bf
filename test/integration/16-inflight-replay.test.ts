/**
 * max_inflight_messages on the stored queue of a persistent session (src/broker/delivery/stored-window.ts, persistence/store.ts):
 * what aedes sends on reconnect goes through the same outgoing window as live deliveries.
 *
 * Every scenario runs against Midge (LevelDB store) and against Debian's mosquitto 2.0.11 with the same raw
 * subscriber; the tests assert what the two share. Measured on mosquitto (this file's steps):
 *  - 50 queued messages (QoS 1 and 2 alternating): 5 PUBLISH before any acknowledgement, as Midge; all 50 in order,
 *    once. But each of its first 9 PUBACK/PUBCOMPs released 5 more at once (up to 9 in flight); Midge releases one.
 *  - live publishes during the replay come after the stored ones (both brokers), and a live QoS 0 message is sent
 *    at once, before the queued QoS 1/2 ones (both);
 *  - a disconnect mid-replay after one PUBACK and one PUBREC: both resend what was in flight first (m2's PUBREL, then
 *    PUBLISH with DUP=1 and the same ids: m3-m6 for Midge, m3-m10 for mosquitto after its refill), then the rest
 *    once each, in order, without DUP.
 * Every Midge assertion here failed before the stored queue was windowed (aedes sent all 50 at once).
 */
import { test, expect } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { RawClient, type AnyPacket } from '../helpers/raw-client.js'
import { freePort, spawnMosquitto, writeConf } from '../helpers/processes.js'

type OnFinished = (fn: () => void | Promise<void>) => void
const N = 50
const WINDOW = 5
const qosOf = (i: number): 1 | 2 => i % 2 === 1 ? 1 : 2
const stored = Array.from({ length: N }, (_, i) => `m${i + 1}`)

/** Midge's two stores: in memory, aedes' own replay wrote all 50 before a PINGREQ round trip; LevelDB is the default. */
const STORES = ['memory', 'level'] as const
type Store = typeof STORES[number]

/** Midge brokers by port, for their counters. */
const midges = new Map<number, TestBroker>()

async function midge (onFinished: OnFinished, store: Store): Promise<number> {
  const persistence = store === 'level' ? 'persistence true\npersistence_location {dir}\n' : 'persistence false\n'
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages ${WINDOW}\n${persistence}`)
  onFinished(() => b.close())
  midges.set(b.port(), b)
  return b.port()
}

async function mosquitto (onFinished: OnFinished): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'midge-mosq-'))
  onFinished(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const m = await spawnMosquitto(await writeConf(dir, `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages ${WINDOW}\nlog_dest stderr\n`, 'mosquitto.conf'))
  onFinished(() => m.stop())
  return port
}

async function client (port: number, clientId: string, clean: boolean, onFinished: OnFinished): Promise<{ c: RawClient, connack: AnyPacket }> {
  const c = await RawClient.connect(port)
  onFinished(() => c.end())
  const connack = await c.connectMqtt({ clientId, clean })
  expect(connack.returnCode).toBe(0)
  return { c, connack }
}

/** Publishes `payloads` to r/<payload> one after the other, each completed (PUBACK, or PUBREC-PUBREL-PUBCOMP). */
async function publish (pub: RawClient, payloads: string[], qos: (i: number) => 0 | 1 | 2): Promise<void> {
  for (const [i, payload] of payloads.entries()) {
    const q = qos(i + 1)
    pub.send({ cmd: 'publish', topic: `r/${payload}`, payload, qos: q, messageId: i + 1, retain: false, dup: false })
    if (q === 1) await pub.next('puback')
    if (q === 2) {
      await pub.next('pubrec')
      pub.send({ cmd: 'pubrel', messageId: i + 1 })
      await pub.next('pubcomp')
    }
  }
  await pub.ping()
}

/** A persistent session subscribed to r/# (QoS 2), offline, with `payloads` queued on r/<payload> (QoS 1 and 2 alternating). */
async function offlineQueue (port: number, onFinished: OnFinished, payloads = stored, subQos: 1 | 2 = 2): Promise<void> {
  const { c: sub } = await client(port, 'replay-sub', false, onFinished)
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: subQos }] })
  expect((await sub.next('suback')).granted).toEqual([subQos])
  // DISCONNECT: the broker closes the socket once it has processed it
  sub.send({ cmd: 'disconnect' })
  await sub.closed
  const { c: pub } = await client(port, 'replay-pub', true, onFinished)
  await publish(pub, payloads, qosOf)
  pub.end()
}

const isMessage = (p: AnyPacket): boolean => p.cmd === 'publish' || p.cmd === 'pubrel'
const label = (p: AnyPacket): string => p.cmd === 'pubrel' ? `rel:${p.messageId as number}` : `${(p.payload as Buffer).toString()}${p.dup === true ? '*' : ''}`

/** Waits for `atLeast` PUBLISH/PUBREL packets, then a PINGREQ round trip: also everything sent before the PINGRESP. */
async function take (sub: RawClient, atLeast: number): Promise<AnyPacket[]> {
  const out: AnyPacket[] = []
  while (out.length < atLeast) {
    const p = await sub.next(undefined, 10_000)
    if (isMessage(p)) out.push(p)
  }
  await sub.ping()
  out.push(...sub.packets.filter(isMessage))
  sub.packets.splice(0, sub.packets.length, ...sub.packets.filter(p => !isMessage(p)))
  return out
}

interface Replay {
  /** What arrived before any acknowledgement (`*` = DUP, `rel:<id>` = PUBREL). */
  initial: string[]
  /** Messages released by each PUBACK/PUBCOMP, oldest acknowledged first. */
  perAck: number[]
  /** Messages released by a PUBREC (the message stays in flight until PUBCOMP). */
  perPubrec: number[]
  /** Every PUBLISH payload in arrival order. */
  order: string[]
  /** Most QoS 1/2 messages sent and not yet acknowledged at once. */
  maxInflight: number
  packets: AnyPacket[]
}

/**
 * The subscriber reconnects, takes what arrives before any acknowledgement (at least `first`), runs `during`, then
 * acknowledges the oldest message in flight, one at a time, until `publishes` PUBLISH packets have arrived and all
 * are acknowledged. `stopAfter` acknowledgements: returns there, with the rest in flight.
 */
async function replay (port: number, onFinished: OnFinished, o: { first: number, publishes: number, during?: (sub: RawClient) => Promise<void>, stopAfter?: number, pubrecOnly?: number }): Promise<Replay & { sub: RawClient }> {
  const { c: sub, connack } = await client(port, 'replay-sub', false, onFinished)
  expect(connack.sessionPresent).toBe(true)
  const initial = await take(sub, o.first)
  const r: Replay & { sub: RawClient } = { sub, initial: initial.map(label), perAck: [], perPubrec: [], order: [], maxInflight: 0, packets: [...initial] }
  const outstanding = [...initial]
  const arrived = (ps: AnyPacket[]): void => {
    outstanding.push(...ps)
    r.packets.push(...ps)
    r.maxInflight = Math.max(r.maxInflight, outstanding.length)
  }
  r.maxInflight = outstanding.length
  if (o.during) {
    await o.during(sub)
    arrived(await take(sub, 0))
  }
  const published = (): number => r.packets.filter(p => p.cmd === 'publish').length
  for (let acks = 0; outstanding.length > 0 && acks !== o.stopAfter; acks++) {
    const oldest = outstanding.shift()!
    if (oldest.cmd === 'publish' && oldest.qos === 2) {
      sub.send({ cmd: 'pubrec', messageId: oldest.messageId })
      expect((await sub.next('pubrel')).messageId).toBe(oldest.messageId)
      const more = await take(sub, 0)
      r.perPubrec.push(more.length)
      arrived(more)
      if (o.pubrecOnly === acks) { outstanding.unshift({ cmd: 'pubrel', messageId: oldest.messageId } as AnyPacket); continue }
    }
    sub.send({ cmd: oldest.cmd === 'publish' && oldest.qos === 1 ? 'puback' : 'pubcomp', messageId: oldest.messageId })
    const more = await take(sub, published() < o.publishes ? 1 : 0)
    r.perAck.push(more.length)
    arrived(more)
  }
  r.order = r.packets.filter(p => p.cmd === 'publish').map(p => (p.payload as Buffer).toString())
  return r
}

/** The figures both brokers must share for the 50-message replay. */
function expectWindowedReplay (r: Replay, qos: (i: number) => number = qosOf): void {
  expect(r.initial).toEqual(stored.slice(0, WINDOW))
  expect(r.order).toEqual(stored)
  expect(r.packets.map(p => p.qos)).toEqual(stored.map((_, i) => qos(i + 1)))
  expect(r.perPubrec.every(n => n === 0)).toBe(true)
  expect(r.perAck.reduce((a, b) => a + b, 0)).toBe(N - WINDOW)
}

test('stored queue on reconnect: 5 of 50 before any acknowledgement (as mosquitto), one more per PUBACK/PUBCOMP, all in order once', async ({ onTestFinished }) => {
  const mport = await mosquitto(onTestFinished)
  await offlineQueue(mport, onTestFinished)
  const m = await replay(mport, onTestFinished, { first: WINDOW, publishes: N })
  expectWindowedReplay(m)
  expect(Math.max(...m.perAck)).toBeGreaterThan(1) // its refill

  for (const store of STORES) {
    const port = await midge(onTestFinished, store)
    await offlineQueue(port, onTestFinished)
    const r = await replay(port, onTestFinished, { first: WINDOW, publishes: N })
    expectWindowedReplay(r)
    expect(r.perAck).toEqual([...Array<number>(N - WINDOW).fill(1), ...Array<number>(WINDOW).fill(0)])
    expect(r.maxInflight).toBe(WINDOW)
    // the ids in flight at once are distinct: every window of 5 consecutive messages
    for (let i = 0; i + WINDOW <= N; i++) expect(new Set(r.packets.slice(i, i + WINDOW).map(p => p.messageId)).size).toBe(WINDOW)
    // nothing is left in the store: a new connection of the session gets nothing
    r.sub.end()
    await r.sub.closed
    const { c: again } = await client(port, 'replay-sub', false, onTestFinished)
    expect(await take(again, 0)).toEqual([])
  }
})

/** Live QoS 1 publishes l1-l3 and a QoS 0 one (z) while the stored queue is being sent. */
async function liveDuringReplay (port: number, onFinished: OnFinished): Promise<{ r: Replay, zAt: number }> {
  await offlineQueue(port, onFinished)
  const { c: pub } = await client(port, 'replay-live', true, onFinished)
  let zAt = -1
  const r = await replay(port, onFinished, {
    first: WINDOW,
    publishes: N + 3,
    during: async (sub) => {
      await publish(pub, ['l1', 'l2', 'l3'], () => 1)
      await publish(pub, ['z'], () => 0)
      // the QoS 0 one is not windowed: it arrives now, the QoS 1 ones wait behind the stored queue
      const z = await sub.next('publish')
      expect([(z.payload as Buffer).toString(), z.qos]).toEqual(['z', 0])
      zAt = 0
    }
  })
  return { r, zAt }
}

test('live publishes during the replay go out after the stored ones (as mosquitto), in the same window; QoS 0 is not windowed', async ({ onTestFinished }) => {
  const runs = [await liveDuringReplay(await mosquitto(onTestFinished), onTestFinished)]
  for (const store of STORES) {
    const port = await midge(onTestFinished, store)
    runs.push(await liveDuringReplay(port, onTestFinished))
    // the live publisher was not held behind the stored queue until the subscriber counted as stuck (1 s without
    // an acknowledgement while it waited: `during` acknowledges nothing)
    expect(midges.get(port)!.broker.stats.persistence?.stuckEpisodes).toBe(0)
  }
  for (const x of runs) {
    expect(x.zAt).toBe(0)
    expect(x.r.initial).toEqual(stored.slice(0, WINDOW))
    expect(x.r.order).toEqual([...stored, 'l1', 'l2', 'l3'])
  }
  for (const { r } of runs.slice(1)) {
    // one per acknowledgement throughout, the switch from stored to live included: never more than 5 in flight
    expect(r.perAck).toEqual([...Array<number>(N + 3 - WINDOW).fill(1), ...Array<number>(WINDOW).fill(0)])
    expect(r.maxInflight).toBe(WINDOW)
  }
})

/**
 * Reconnect, acknowledge m1 (m6 comes), PUBREC m2 (its PUBREL comes), drop the connection with m2 (at PUBREL),
 * m3-m6 in flight; reconnect and acknowledge everything.
 */
async function disconnectMidReplay (port: number, onFinished: OnFinished): Promise<{ first: Replay, second: Replay }> {
  await offlineQueue(port, onFinished)
  const first = await replay(port, onFinished, { first: WINDOW, publishes: N, stopAfter: 2, pubrecOnly: 1 })
  first.sub.end()
  await first.sub.closed
  const second = await replay(port, onFinished, { first: WINDOW, publishes: N - 2 })
  return { first, second }
}

function expectResumed (first: Replay, second: Replay): void {
  expect(first.initial).toEqual(stored.slice(0, WINDOW))
  // what was in flight when the connection dropped: m2 (at PUBREL) and m3 up to the last one sent
  const sent = first.order.length
  const ids = first.packets.map(p => p.messageId as number)
  const inflight = [`rel:${ids[1]!}`, ...stored.slice(2, sent).map(m => `${m}*`)]
  // it comes again first: m2's PUBREL, then the PUBLISH packets with DUP and their ids
  expect(second.packets.slice(0, inflight.length).map(label)).toEqual(inflight)
  expect(second.packets.slice(1, inflight.length).map(p => p.messageId)).toEqual(ids.slice(2, sent))
  // then the rest, each once, in order, none flagged DUP
  expect(second.order).toEqual(stored.slice(2))
  expect(second.packets.slice(inflight.length).every(p => p.dup !== true)).toBe(true)
}

test('disconnect mid-replay: the reconnect resends what was in flight (PUBREL, DUP with the same ids) before the rest, as mosquitto', async ({ onTestFinished }) => {
  const m = await disconnectMidReplay(await mosquitto(onTestFinished), onTestFinished)
  expectResumed(m.first, m.second)
  for (const store of STORES) {
    const { first, second } = await disconnectMidReplay(await midge(onTestFinished, store), onTestFinished)
    expectResumed(first, second)
    expect(first.order).toEqual(stored.slice(0, 6))
    expect(second.initial).toEqual([`rel:${first.packets[1]!.messageId as number}`, 'm3*', 'm4*', 'm5*', 'm6*'])
    expect(second.maxInflight).toBe(WINDOW)
    expect(second.perAck).toEqual([...Array<number>(N - 6).fill(1), ...Array<number>(WINDOW).fill(0)])
  }
})

test('stored QoS 2 messages for a QoS 1 subscription go out at QoS 1 (as mosquitto) and their PUBACK frees the slot', async ({ onTestFinished }) => {
  const mport = await mosquitto(onTestFinished)
  await offlineQueue(mport, onTestFinished, stored, 1)
  expectWindowedReplay(await replay(mport, onTestFinished, { first: WINDOW, publishes: N }), () => 1)
  for (const store of STORES) {
    const port = await midge(onTestFinished, store)
    await offlineQueue(port, onTestFinished, stored, 1)
    const r = await replay(port, onTestFinished, { first: WINDOW, publishes: N })
    expectWindowedReplay(r, () => 1)
    expect(r.perAck).toEqual([...Array<number>(N - WINDOW).fill(1), ...Array<number>(WINDOW).fill(0)])
  }
})

test('stored messages the ACL no longer lets the client read are not sent and hold no slot', async ({ onTestFinished }) => {
  for (const store of STORES) {
    const { dir, remove } = await tempDir()
    onTestFinished(remove)
    const acl = join(dir, 'acl')
    await writeFile(acl, 'topic readwrite r/#\n')
    const persistence = store === 'level' ? `persistence true\npersistence_location ${dir}\n` : 'persistence false\n'
    const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages ${WINDOW}\n${persistence}acl_file ${acl}\n`)
    onTestFinished(() => b.close())
    // a/1, b/2, a/3, ... : the b ones are refused when the queue is sent (aedes asks authorizeForward then)
    const payloads = Array.from({ length: 20 }, (_, i) => `${i % 2 === 0 ? 'a' : 'b'}/${i + 1}`)
    await offlineQueue(b.port(), onTestFinished, payloads)
    await writeFile(acl, 'topic readwrite r/#\ntopic deny r/b/#\n')
    await b.broker.reload()
    const allowed = payloads.filter(p => p.startsWith('a/'))
    const r = await replay(b.port(), onTestFinished, { first: WINDOW, publishes: allowed.length })
    expect(r.initial).toEqual(allowed.slice(0, WINDOW))
    expect(r.order).toEqual(allowed)
    expect(r.perAck).toEqual([...Array<number>(allowed.length - WINDOW).fill(1), ...Array<number>(WINDOW).fill(0)])
  }
})

test('the broker stops while a stored queue waits for acknowledgements: it closes, and after a restart the rest follows', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = `listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages ${WINDOW}\npersistence true\npersistence_location ${dir}\n`
  const b1 = await startTestBroker(conf)
  onTestFinished(() => b1.close())
  await offlineQueue(b1.port(), onTestFinished)
  // m1 acknowledged (m6 comes), m2 completed (m7 comes): m3-m7 in flight, m8-m50 held back by the window
  const first = await replay(b1.port(), onTestFinished, { first: WINDOW, publishes: N, stopAfter: 2 })
  expect(first.order).toEqual(stored.slice(0, 7))
  // with this client connected, Broker.close used to wait for its 4 s deadline and leave the store open
  const t = Date.now()
  await b1.close()
  expect(Date.now() - t).toBeLessThan(2000)
  await first.sub.closed
  const b2 = await startTestBroker(conf)
  onTestFinished(() => b2.close())
  const second = await replay(b2.port(), onTestFinished, { first: WINDOW, publishes: N - 2 })
  expect(second.initial).toEqual(['m3*', 'm4*', 'm5*', 'm6*', 'm7*'])
  expect(second.order).toEqual(stored.slice(2))
  expect(second.perAck).toEqual([...Array<number>(N - 7).fill(1), ...Array<number>(WINDOW).fill(0)])
})

test('a clean-session reconnect discards the stored queue (aedes clears it message by message) without holding the window', async ({ onTestFinished }) => {
  for (const store of STORES) {
    const port = await midge(onTestFinished, store)
    await offlineQueue(port, onTestFinished)
    const { c: sub, connack } = await client(port, 'replay-sub', true, onTestFinished)
    expect(connack.sessionPresent).toBe(false)
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: 1 }] })
    expect((await sub.next('suback')).granted).toEqual([1])
    const { c: pub } = await client(port, 'replay-pub', true, onTestFinished)
    await publish(pub, ['new'], () => 1)
    const got = await take(sub, 1)
    expect(got.map(label)).toEqual(['new'])
  }
})
