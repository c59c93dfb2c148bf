/**
 * Fuzz test: for a bounded time (MIDGE_FUZZ_SECONDS, default 15), many connections at once send
 * mutated MQTT packets (built with mqtt-packet, then bit-flipped, truncated, spliced, re-typed, given random
 * remaining lengths) and pure noise to the built daemon in a child process, while a well-behaved publisher and
 * subscriber exchange numbered QoS 1 messages. Afterwards: the daemon still runs and serves a new client, logged
 * no uncaught exception, its heap (after GC) is back near its baseline, and the QoS 1 stream lost nothing
 * (every acknowledged number arrived, in order, once). MIDGE_FUZZ_SEED replays a run.
 */
import { test, expect } from 'vitest'
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import mqtt from 'mqtt'
import { startChildBroker, crashLines } from '../helpers/processes.js'

const SECONDS = Number(process.env.MIDGE_FUZZ_SECONDS ?? 15)
const SEED = Number(process.env.MIDGE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const FUZZERS = 40

/** Small deterministic PRNG (mulberry32), so a failing run can be replayed with MIDGE_FUZZ_SEED. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Fails with `what` instead of hanging the test when a step does not finish in time. */
function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms) })])
    .finally(() => clearTimeout(t))
}

type Rnd = () => number
const int = (r: Rnd, n: number) => Math.floor(r() * n)
const pick = <T>(r: Rnd, xs: readonly T[]): T => xs[int(r, xs.length)]!
const bytes = (r: Rnd, n: number) => Buffer.from(Array.from({ length: n }, () => int(r, 256)))

const TOPICS = ['fz/a', 'fz/+/b', 'fz/#', '#', '+', '$SYS/broker/x', '$MIDGE/dropped', '', '/', '//', 'fz/\u0000/x',
  'fz/é/✓', 'fz/' + 'x'.repeat(300), 'fz/' + 'a/'.repeat(120), 'fz/a#', 'fz/+b', 'fz/\uffff']

/** Client ids that asked for a persistent session: the legitimate state the fuzzers leave, removed before memory is compared. */
const persistentIds = new Set<string>()

function validPacket (r: Rnd, id: string): Record<string, unknown> {
  const qos = int(r, 3)
  const messageId = 1 + int(r, 65535)
  switch (int(r, 12)) {
    case 0: {
      const clean = r() < 0.9
      const clientId = pick(r, [id, '', `${id}-${int(r, 5)}`])
      if (!clean && clientId !== '') persistentIds.add(clientId)
      return connectWith(r, clean, clientId, qos)
    }
    case 1: case 2: case 3: return { cmd: 'publish', topic: pick(r, TOPICS), payload: bytes(r, pick(r, [0, 1, 10, 200, 3000])), qos, messageId, retain: r() < 0.1, dup: r() < 0.2 }
    case 4: return { cmd: 'subscribe', messageId, subscriptions: Array.from({ length: 1 + int(r, 4) }, () => ({ topic: pick(r, TOPICS), qos })) }
    case 5: return { cmd: 'unsubscribe', messageId, unsubscriptions: Array.from({ length: 1 + int(r, 3) }, () => pick(r, TOPICS)) }
    case 6: return { cmd: 'puback', messageId }
    case 7: return { cmd: 'pubrec', messageId }
    case 8: return { cmd: 'pubrel', messageId }
    case 9: return { cmd: 'pubcomp', messageId }
    case 10: return { cmd: 'pingreq' }
    default: return { cmd: pick(r, ['disconnect', 'pingresp', 'connack', 'suback', 'unsuback', 'auth']), messageId, returnCode: 0, granted: [0], sessionPresent: false, reasonCode: 0 }
  }
}

function connectWith (r: Rnd, clean: boolean, clientId: string, qos: number): Record<string, unknown> {
  return {
    cmd: 'connect',
    protocolId: pick(r, ['MQTT', 'MQIsdp', 'MQTX']),
    protocolVersion: pick(r, [3, 4, 4, 4, 5]),
    clean,
    clientId,
    keepalive: pick(r, [0, 1, 60, 65535]),
    ...(r() < 0.3 ? { username: 'u', password: bytes(r, int(r, 20)) } : {}),
    ...(r() < 0.3 ? { will: { topic: pick(r, TOPICS), payload: bytes(r, int(r, 50)), qos, retain: r() < 0.2 } } : {})
  }
}

function generate (p: Record<string, unknown>): Buffer | undefined {
  try {
    return mqttPacket.generate(p as unknown as mqttPacket.Packet)
  } catch {
    return undefined
  }
}

function mutate (r: Rnd, b: Buffer): Buffer {
  const out = Buffer.from(b)
  switch (int(r, 8)) {
    case 0: { // flip bits
      for (let i = 0, n = 1 + int(r, 4); i < n && out.length > 0; i++) out[int(r, out.length)]! ^= 1 << int(r, 8)
      return out
    }
    case 1: return out.subarray(0, int(r, out.length + 1)) // truncate
    case 2: { // splice random bytes in
      const at = int(r, out.length + 1)
      return Buffer.concat([out.subarray(0, at), bytes(r, 1 + int(r, 16)), out.subarray(at)])
    }
    case 3: { if (out.length > 0) out[0] = (int(r, 16) << 4) | (out[0]! & 0x0f); return out } // other packet type
    case 4: { if (out.length > 0) out[0] = (out[0]! & 0xf0) | int(r, 16); return out } // other flags (QoS 3, ...)
    case 5: { // another remaining length, possibly huge or malformed
      const len = pick(r, [0, 1, 127, 128, 16_383, 2_097_151, 268_435_455])
      const enc = Buffer.from(len === 0 ? [0] : (() => { const v: number[] = []; let x = len; do { let d = x % 128; x = Math.floor(x / 128); if (x > 0) d |= 0x80; v.push(d) } while (x > 0); return v })())
      const body = out.subarray(out.length > 1 ? 2 : out.length)
      return Buffer.concat([out.subarray(0, 1), r() < 0.1 ? Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]) : enc, body])
    }
    case 6: return Buffer.concat([out, out]) // duplicated
    default: { for (let i = 0, n = 1 + int(r, 8); i < n && out.length > 0; i++) out[int(r, out.length)] = int(r, 256); return out } // overwrite bytes
  }
}

/** One fuzzing connection: maybe a valid CONNECT, then mutated packets and noise, then a close after a random wait. */
async function fuzzOnce (port: number, r: Rnd, id: string, deadline: number): Promise<number> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.resume()
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  await Promise.race([new Promise(resolve => socket.once('connect', resolve)), closed])
  let sent = 0
  if (r() < 0.7) {
    const c = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: id, keepalive: 60 })!
    socket.write(r() < 0.9 ? c : mutate(r, c))
    sent++
  }
  for (let i = 0, n = 1 + int(r, 20); i < n && !socket.destroyed && Date.now() < deadline; i++) {
    let data: Buffer | undefined
    const kind = r()
    if (kind < 0.15) data = bytes(r, 1 + int(r, 512)) // pure noise
    else {
      data = generate(validPacket(r, id))
      if (data && kind < 0.8) data = mutate(r, data)
    }
    if (data && data.length > 0) { socket.write(data); sent++ }
    if (r() < 0.3) await new Promise(resolve => setTimeout(resolve, int(r, 20)))
  }
  await Promise.race([closed, new Promise(resolve => setTimeout(resolve, int(r, 300)))])
  if (r() < 0.5) socket.end(); else socket.destroy()
  socket.destroy()
  await closed
  return sent
}

test(`fuzz: ${FUZZERS} connections of mutated packets and noise for ${SECONDS} s; the broker survives, its memory returns, QoS 1 traffic alongside loses nothing`, async ({ onTestFinished }) => {
  console.log(`fuzz seed ${SEED} (MIDGE_FUZZ_SEED=${SEED} replays it)`)
  const b = await startChildBroker('listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n')
  onTestFinished(async () => { await b.close() })
  const port = b.ports[0]!
  const url = `mqtt://127.0.0.1:${port}`

  // the well-behaved pair: numbered QoS 1 messages, each awaited (PUBACK) before the next
  const sub = await mqtt.connectAsync(url, { clientId: 'good-sub', clean: true, reconnectPeriod: 0, keepalive: 30 })
  onTestFinished(() => sub.endAsync(true))
  const received: number[] = []
  const waiting = new Map<number, () => void>()
  sub.on('message', (_t, p) => { const n = Number(p.toString()); received.push(n); waiting.get(n)?.() })
  const arrival = (n: number) => new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`message ${n} did not arrive; received ${received.length}`)), 30_000)
    waiting.set(n, () => { clearTimeout(t); resolve() })
  })
  await sub.subscribeAsync('good/seq', { qos: 1 })
  const pub = await mqtt.connectAsync(url, { clientId: 'good-pub', clean: true, reconnectPeriod: 0, keepalive: 30 })
  onTestFinished(() => pub.endAsync(true))
  let subClosed = false
  let pubClosed = false
  sub.on('close', () => { subClosed = true })
  pub.on('close', () => { pubClosed = true })
  const first = arrival(0)
  await pub.publishAsync('good/seq', '0', { qos: 1 })
  await first
  const base = await b.stats()

  const deadline = Date.now() + SECONDS * 1000
  let acked = 1
  const good = (async () => {
    while (Date.now() < deadline) {
      await within(pub.publishAsync('good/seq', String(acked), { qos: 1 }), 30_000, `PUBACK for QoS 1 message ${acked}`)
      acked++
      await new Promise(resolve => setTimeout(resolve, 2))
    }
  })()
  let connections = 0
  let packets = 0
  const root = prng(SEED)
  await Promise.all(Array.from({ length: FUZZERS }, async (_, f) => {
    const r = prng(int(root, 2 ** 31))
    while (Date.now() < deadline) {
      const n = await within(fuzzOnce(port, r, `fz${f}-${connections}`, deadline), 30_000, `fuzzer ${f}`)
      packets += n
      connections++
    }
  }))
  await good
  const during = await b.stats({ gc: false })

  // barrier: a last numbered message; everything acknowledged before it has been delivered once it arrives
  const last = arrival(acked)
  await within(pub.publishAsync('good/seq', String(acked), { qos: 1 }), 30_000, 'PUBACK for the last QoS 1 message')
  acked++
  await last
  expect(received).toEqual(Array.from({ length: acked }, (_, i) => i))
  expect([subClosed, pubClosed]).toEqual([false, false])

  // a new client is served
  const fresh = await mqtt.connectAsync(url, { clientId: 'after-fuzz', reconnectPeriod: 0, connectTimeout: 30_000 })
  onTestFinished(() => fresh.endAsync(true))
  const echo = new Promise<string>(resolve => fresh.on('message', (_t, p) => resolve(p.toString())))
  await within(fresh.subscribeAsync('after/fuzz', { qos: 1 }), 30_000, 'SUBACK after the fuzz')
  await within(fresh.publishAsync('after/fuzz', 'ok', { qos: 1 }), 30_000, 'PUBACK after the fuzz')
  expect(await within(echo, 30_000, 'message after the fuzz')).toBe('ok')

  // remove the legitimate state fuzzers created (persistent sessions with their queues, retained messages), so that
  // what remains in the heap is what the broker failed to free
  const ids = [...persistentIds]
  for (let i = 0; i < ids.length; i += 20) {
    await Promise.all(ids.slice(i, i + 20).map(async id => {
      const c = await mqtt.connectAsync(url, { clientId: id, clean: true, reconnectPeriod: 0, connectTimeout: 30_000 })
      await within(c.endAsync(), 30_000, `end of cleanup client ${id}`)
    }))
  }
  const sweeper = await mqtt.connectAsync(url, { clientId: 'sweeper', reconnectPeriod: 0, connectTimeout: 30_000 })
  onTestFinished(() => sweeper.endAsync(true))
  const retained = new Set<string>()
  sweeper.on('message', (topic, _p, packet) => { if (packet.retain) retained.add(topic) })
  await within(sweeper.subscribeAsync('#', { qos: 1 }), 30_000, 'sweeper SUBACK')
  await within(sweeper.unsubscribeAsync('#'), 30_000, 'sweeper UNSUBACK') // UNSUBACK comes after the retained messages of the SUBSCRIBE were sent
  for (const t of retained) await within(sweeper.publishAsync(t, '', { qos: 1, retain: true }), 30_000, `clearing retained ${t}`)
  await within(sweeper.endAsync(), 30_000, 'sweeper end')

  const after = await b.stats()
  const mb = (n: number) => (n / 1e6).toFixed(1)
  console.log(`fuzz: ${connections} connections, ${packets} mutated packets/noise chunks in ${SECONDS} s, ${ids.length} persistent sessions and ${retained.size} retained messages cleaned up; ${acked} QoS 1 messages ` +
    `acknowledged and ${received.length} received; broker heap after GC: base ${mb(base.heapUsed)} MB, after ${mb(after.heapUsed)} MB ` +
    `(RSS ${mb(base.rss)} -> ${mb(after.rss)} MB); event-loop delay during the run: p99 ${during.delayP99Ms.toFixed(0)} ms, max ${during.delayMaxMs.toFixed(0)} ms`)
  expect(b.alive()).toBe(true)
  expect(b.uncaught).toEqual([])
  expect(crashLines(b.stderr())).toEqual([])
  expect(connections).toBeGreaterThan(FUZZERS)
  // what cannot be cleaned up (sessions of CONNECTs whose clean flag a mutation cleared) is small
  expect(after.heapUsed - base.heapUsed).toBeLessThan(8e6)
}, 120_000 + SECONDS * 1000 * 2)
