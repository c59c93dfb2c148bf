/**
 * max_inflight_messages: QoS 1/2 messages sent to one client and not yet acknowledged (src/broker/delivery/outgoing-window.ts).
 * Midge follows the documented meaning: at most N in flight, one more released per PUBACK (QoS 1) or PUBCOMP (QoS 2).
 *
 * Debian's mosquitto 2.0.11, run with `mosquitto -c conf` and `max_inflight_messages 5` against the same raw
 * subscriber (12 publishes, PINGREQ round trip plus 150 ms after each step):
 *  - QoS 1: 5 PUBLISH packets before the PINGRESP (m1-m5, ids 1-5), as here. But the first PUBACK released 5 more
 *    at once (m6-m10: 9 in flight) and the second the last 2; Midge releases exactly one per PUBACK.
 *  - QoS 2: 5 before the PINGRESP; a PUBREC got its PUBREL and released nothing, as here. The PUBCOMPs released
 *    nothing either: m6-m12 were still not sent 3 s after the fifth PUBCOMP. Midge releases one per PUBCOMP.
 *  - `max_inflight_messages 0` and the default (20): all 12 at once, as here.
 *  - A PUBCOMP for a QoS 1 message: mosquitto closed the connection; Midge ignores it (frees no slot).
 */
import { test, expect } from 'vitest'
import { startTestBroker, type TestBroker } from '../helpers/start-broker.js'
import { RawClient, type AnyPacket } from '../helpers/raw-client.js'
import { connect, collect } from '../helpers/mqtt.js'

const N = 12

/** Publish N messages at `qos` to `w/<i>` and wait for the publisher's acknowledgements (QoS 1 PUBACK / QoS 2 PUBCOMP):
 * by then each message has been written to the subscriber or is waiting for its window. */
async function publishAll (port: number, qos: 1 | 2, onFinished: (fn: () => void) => void): Promise<void> {
  const pub = await RawClient.connect(port)
  onFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'inflight-pub' })
  for (let i = 1; i <= N; i++) pub.send({ cmd: 'publish', topic: `w/${i}`, payload: `m${i}`, qos, messageId: i, retain: false, dup: false })
  const ids = Array.from({ length: N }, (_, i) => i + 1)
  const acks = async (cmd: string): Promise<number[]> => {
    const got: number[] = []
    for (let i = 1; i <= N; i++) got.push((await pub.next(cmd)).messageId as number)
    return got.sort((a, b) => a - b)
  }
  if (qos === 1) {
    expect(await acks('puback')).toEqual(ids)
    return
  }
  // QoS 2 goes out on PUBREL: release them in publish order once all are received
  expect(await acks('pubrec')).toEqual(ids)
  for (const i of ids) pub.send({ cmd: 'pubrel', messageId: i })
  expect(await acks('pubcomp')).toEqual(ids)
}

/** Every PUBLISH the subscriber has received and not yet taken, after a PINGREQ round trip. */
async function drainPublishes (sub: RawClient): Promise<AnyPacket[]> {
  await sub.ping()
  const got = sub.packets.filter(p => p.cmd === 'publish')
  sub.packets.splice(0, sub.packets.length, ...sub.packets.filter(p => p.cmd !== 'publish'))
  return got
}

async function subscriber (port: number, qos: 1 | 2, onFinished: (fn: () => void) => void): Promise<RawClient> {
  const sub = await RawClient.connect(port)
  onFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'inflight-sub' })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'w/#', qos }] })
  expect((await sub.next('suback')).granted).toEqual([qos])
  return sub
}

/** A broker started with `conf`, the raw QoS 1 subscriber of `w/#` and a raw publisher; `publish(i)` sends m<i> to w/<i>. */
async function windowScene (conf: string, onFinished: (fn: () => void) => void): Promise<{ b: TestBroker, sub: RawClient, pub: RawClient, publish: (i: number) => void }> {
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\n${conf}\n`)
  onFinished(() => { void b.close() })
  const sub = await subscriber(b.port(), 1, onFinished)
  const pub = await RawClient.connect(b.port())
  onFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'inflight-pub' })
  const publish = (i: number): void => pub.send({ cmd: 'publish', topic: `w/${i}`, payload: `m${i}`, qos: 1, messageId: i, retain: false, dup: false })
  return { b, sub, pub, publish }
}

/** The window scenario against a broker on `port` configured with `max_inflight_messages 5`. */
async function windowOfFive (port: number, qos: 1 | 2, onFinished: (fn: () => void) => void): Promise<void> {
  const sub = await subscriber(port, qos, onFinished)
  await publishAll(port, qos, onFinished)
  const first = await drainPublishes(sub)
  expect(first.map(p => p.payload.toString())).toEqual(['m1', 'm2', 'm3', 'm4', 'm5'])
  expect(first.every(p => p.qos === qos)).toBe(true)
  const outstanding = [...first]
  for (let next = 6; outstanding.length > 0;) {
    // the packet ids in flight at once are distinct
    expect(new Set(outstanding.map(p => p.messageId)).size).toBe(outstanding.length)
    const oldest = outstanding.shift()!
    if (qos === 2) {
      // PUBREC: the broker answers PUBREL and the message stays in flight until PUBCOMP
      sub.send({ cmd: 'pubrec', messageId: oldest.messageId })
      expect((await sub.next('pubrel')).messageId).toBe(oldest.messageId)
      expect(await drainPublishes(sub)).toEqual([])
      sub.send({ cmd: 'pubcomp', messageId: oldest.messageId })
    } else {
      sub.send({ cmd: 'puback', messageId: oldest.messageId })
    }
    if (next <= N) {
      const p = await sub.next('publish')
      expect(p.payload.toString()).toBe(`m${next}`)
      expect(p.topic).toBe(`w/${next}`)
      next++
      outstanding.push(p)
    }
    // exactly one: nothing else came with it
    expect(await drainPublishes(sub)).toEqual([])
  }
}

test('max_inflight_messages 5: 5 QoS 1 messages in flight, each PUBACK releases exactly one more, in order', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n')
  onTestFinished(() => b.close())
  await windowOfFive(b.port(), 1, onTestFinished)
})

test('max_inflight_messages 5: a QoS 2 message stays in flight until PUBCOMP (PUBREC releases nothing)', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n')
  onTestFinished(() => b.close())
  await windowOfFive(b.port(), 2, onTestFinished)
})

test('max_inflight_messages 5: an unknown or mismatched acknowledgement frees no slot', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n')
  onTestFinished(() => b.close())
  const sub = await subscriber(b.port(), 1, onTestFinished)
  await publishAll(b.port(), 1, onTestFinished)
  const first = await drainPublishes(sub)
  expect(first).toHaveLength(5)
  const used = new Set(first.map(p => p.messageId as number))
  let bogus = 1
  while (used.has(bogus)) bogus++
  sub.send({ cmd: 'puback', messageId: bogus })
  sub.send({ cmd: 'pubcomp', messageId: first[0]!.messageId }) // a QoS 1 message is acknowledged by PUBACK only
  expect(await drainPublishes(sub)).toEqual([])
  sub.send({ cmd: 'puback', messageId: first[0]!.messageId })
  expect((await sub.next('publish')).payload.toString()).toBe('m6')
})

test('max_inflight_messages 0: no window, all QoS 1 messages are sent at once', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n')
  onTestFinished(() => b.close())
  const sub = await subscriber(b.port(), 1, onTestFinished)
  await publishAll(b.port(), 1, onTestFinished)
  const all = await drainPublishes(sub)
  expect(all.map(p => p.payload.toString())).toEqual(Array.from({ length: N }, (_, i) => `m${i + 1}`))
  expect(new Set(all.map(p => p.messageId)).size).toBe(N)
})

test('default max_inflight_messages (20): 12 unacknowledged QoS 1 messages all go out', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const sub = await subscriber(b.port(), 1, onTestFinished)
  await publishAll(b.port(), 1, onTestFinished)
  expect(await drainPublishes(sub)).toHaveLength(N)
})

test('persistent session: what waits for the window when the client goes is sent from the store on reconnect, in order', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n')
  onTestFinished(() => b.close())
  const sub = await RawClient.connect(b.port())
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'inflight-keep', clean: false })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'w/#', qos: 1 }] })
  await sub.next('suback')
  await publishAll(b.port(), 1, onTestFinished)
  expect((await drainPublishes(sub)).map(p => p.payload.toString())).toEqual(['m1', 'm2', 'm3', 'm4', 'm5'])
  sub.end()
  await sub.closed

  const again = await RawClient.connect(b.port())
  onTestFinished(() => again.end())
  expect(await again.connectMqtt({ clientId: 'inflight-keep', clean: false })).toMatchObject({ returnCode: 0, sessionPresent: true })
  // the stored queue goes through the same window (broker/delivery/stored-window.ts): m1-m5 again with DUP and nothing more, then one
  // per PUBACK. mosquitto 2.0.11 (same steps) resends m1-m5 with DUP and keeps m6-m12 until acknowledgements come
  // (with its refill above: m6-m10 after the first PUBACK, m11-m12 after the second). More in 16-inflight-replay.
  const first: AnyPacket[] = []
  while (first.length < 5) first.push(await again.next('publish'))
  expect(first.map(p => `${p.payload.toString()}${p.dup === true ? '*' : ''}`)).toEqual(['m1*', 'm2*', 'm3*', 'm4*', 'm5*'])
  expect(await drainPublishes(again)).toEqual([])
  const outstanding = [...first]
  const got = first.map(p => p.payload.toString())
  while (outstanding.length > 0) {
    again.send({ cmd: 'puback', messageId: outstanding.shift()!.messageId })
    if (got.length < N) {
      const p = await again.next('publish')
      expect(p.dup).toBe(false)
      got.push(p.payload.toString())
      outstanding.push(p)
    }
    expect(await drainPublishes(again)).toEqual([])
  }
  expect(got).toEqual(Array.from({ length: N }, (_, i) => `m${i + 1}`))
})

test('max_inflight_messages 2 + max_queued_messages 3: a client that acknowledges nothing gets 2 + 3, the rest is dropped', async ({ onTestFinished }) => {
  const { sub, pub, publish } = await windowScene('max_inflight_messages 2\nmax_queued_messages 3', onTestFinished)
  const send = async (from: number, to: number): Promise<void> => {
    for (let i = from; i <= to; i++) publish(i)
    for (let i = from; i <= to; i++) await pub.next('puback')
  }
  // m3 and m4 wait: within a second of the last acknowledgement (or of the first send) nothing is dropped
  await send(1, 4)
  const first = await drainPublishes(sub)
  expect(first.map(p => p.payload.toString())).toEqual(['m1', 'm2'])
  // the bound is about time by design (no acknowledgement for stuckAfterMs = 1 s): wait that long, not an event
  await new Promise(resolve => setTimeout(resolve, 1200))
  // now at most 3 wait: m5 joins m3 and m4, m6-m8 are dropped (mosquitto 2.0.11 with the same options and steps:
  // m1-m2 sent, m3-m5 queued, m6-m8 dropped; it delivers m3-m5 as the PUBACKs come, with its refill above)
  await send(5, 8)
  const outstanding = [...first]
  const got = first.map(p => p.payload.toString())
  while (outstanding.length > 0) {
    sub.send({ cmd: 'puback', messageId: outstanding.shift()!.messageId })
    const more = await drainPublishes(sub)
    outstanding.push(...more)
    got.push(...more.map(p => p.payload.toString()))
  }
  expect(got).toEqual(['m1', 'm2', 'm3', 'm4', 'm5'])
})

test('a publisher is not read while its messages wait for the window: the next PUBLISH is acknowledged only after the subscriber acknowledges', async ({ onTestFinished }) => {
  // aedes reads a connection's next batch on every 'readable' event, even while the last batch still waits for a
  // slow subscriber; QoS 1 PUBACKs go out before routing, so the publisher was acknowledged without limit and the
  // subscriber's queue overflowed (src/broker/read-loop.ts). Midge reads the publisher once its batch is delivered.
  const { sub, pub, publish } = await windowScene('max_inflight_messages 1', onTestFinished)
  const order: string[] = []
  publish(1)
  expect((await pub.next('puback')).messageId).toBe(1)
  const m1 = await sub.next('publish')
  expect(m1.payload.toString()).toBe('m1')
  // m2 is acknowledged to the publisher (aedes acknowledges QoS 1 before routing) and waits for the window
  publish(2)
  expect((await pub.next('puback')).messageId).toBe(2)
  // m3 arrives in its own read while m2 waits: it must stay unread. This checks for an absence, so it waits a fixed
  // time, well under the 1 s after which a subscriber that acknowledges nothing is stuck and no longer holds anyone
  publish(3)
  const puback3 = pub.next('puback').then(p => { order.push(`puback ${String(p.messageId)}`) })
  await new Promise(resolve => setTimeout(resolve, 300))
  expect(order).toEqual([])
  expect(await drainPublishes(sub)).toEqual([])
  order.push('subscriber acks m1')
  sub.send({ cmd: 'puback', messageId: m1.messageId })
  const m2 = await sub.next('publish')
  expect(m2.payload.toString()).toBe('m2')
  await puback3
  expect(order).toEqual(['subscriber acks m1', 'puback 3'])
  sub.send({ cmd: 'puback', messageId: m2.messageId })
  expect((await sub.next('publish')).payload.toString()).toBe('m3')
})

test('a subscriber that reads its QoS 0 messages but acknowledges no QoS 1 one holds its publishers for about a second, not for ever', async ({ onTestFinished }) => {
  // the QoS 0 writes to it complete, which used to count as progress: the QoS 1 publisher waited for a window that
  // never moves. Only an acknowledgement counts for the window (src/broker/delivery/slow-consumer.ts).
  const { b, sub, pub, publish } = await windowScene('max_inflight_messages 1', onTestFinished)
  const ticker = await RawClient.connect(b.port())
  onTestFinished(() => ticker.end())
  await ticker.connectMqtt({ clientId: 'ticker' })
  // QoS 0 traffic to the same subscriber every 50 ms, which it reads
  const tick = setInterval(() => ticker.send({ cmd: 'publish', topic: 'w/tick', payload: 't', qos: 0, retain: false, dup: false }), 50)
  onTestFinished(() => clearInterval(tick))
  publish(1)
  await pub.next('puback')
  publish(2)
  await pub.next('puback')
  const started = Date.now()
  // m2 waits for the window; m3 is read once the subscriber counts as stuck (1 s without an acknowledgement)
  publish(3)
  expect((await pub.next('puback', 4000)).messageId).toBe(3)
  expect(Date.now() - started).toBeGreaterThanOrEqual(900)
  const ticks = sub.packets.filter(p => p.cmd === 'publish' && p.topic === 'w/tick').length
  expect(ticks).toBeGreaterThan(5)
  // the stuck subscriber still gets its window's worth: m1 only, nothing acknowledged, nothing more sent
  expect(sub.packets.filter(p => p.cmd === 'publish' && p.qos === 1).map(p => p.payload.toString())).toEqual(['m1'])
})

test('a client that receives its own QoS 1 messages is not held up by its own window: 500 echoes at once arrive in order without it ever counting as stuck', async ({ onTestFinished }) => {
  // its publishes wait for its own window, which only its PUBACKs free; holding its reads for that window would
  // leave those PUBACKs unread until it counts as stuck (1 s), again and again (src/broker/delivery/slow-consumer.ts)
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'echo' }, onTestFinished)
  const inbox = collect(c)
  await c.subscribeAsync('echo/#', { qos: 1 })
  const started = Date.now()
  await Promise.all(Array.from({ length: 500 }, (_, k) => c.publishAsync('echo/x', String(k), { qos: 1 })))
  const msgs = await inbox.take(500, 10_000)
  const ms = Date.now() - started
  expect(msgs.map(m => Number(m.payload))).toEqual(Array.from({ length: 500 }, (_, k) => k))
  // it never counted as stuck (each time it did, everything waited a second)
  expect(b.broker.stats.persistence?.stuckEpisodes).toBe(0)
  expect(ms).toBeLessThan(5000)
})

test('two clients publishing QoS 1 to each other at once do not wait on each other\'s unread acknowledgements', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const [x, y] = await Promise.all(['x', 'y'].map(id => connect(b.url(), { clientId: id }, onTestFinished)))
  const [toX, toY] = [collect(x!), collect(y!)]
  await x!.subscribeAsync('to/x', { qos: 1 })
  await y!.subscribeAsync('to/y', { qos: 1 })
  const started = Date.now()
  await Promise.all([
    ...Array.from({ length: 400 }, (_, k) => x!.publishAsync('to/y', String(k), { qos: 1 })),
    ...Array.from({ length: 400 }, (_, k) => y!.publishAsync('to/x', String(k), { qos: 1 }))
  ])
  const [gotX, gotY] = await Promise.all([toX.take(400, 10_000), toY.take(400, 10_000)])
  const ms = Date.now() - started
  expect(gotX.map(m => Number(m.payload))).toEqual(Array.from({ length: 400 }, (_, k) => k))
  expect(gotY.map(m => Number(m.payload))).toEqual(Array.from({ length: 400 }, (_, k) => k))
  expect(b.broker.stats.persistence?.stuckEpisodes).toBe(0)
  expect(ms).toBeLessThan(5000)
})
