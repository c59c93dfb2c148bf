import { test, expect } from 'vitest'
import { ConnectionRateLimiter, topicTooLong } from '../../src/broker/limits.js'

test('ConnectionRateLimiter admits N per second per address, flags the first refusal, and forgets at the next second', () => {
  let now = 5_000
  const r = new ConnectionRateLimiter(2, 100, () => now)
  expect([r.admit('a'), r.admit('a'), r.admit('a'), r.admit('a')]).toEqual([{ ok: true }, { ok: true }, { ok: false, first: true }, { ok: false, first: false }])
  expect(r.admit('b')).toEqual({ ok: true })
  now = 5_999
  expect(r.admit('a')).toEqual({ ok: false, first: false })
  now = 6_000
  expect(r.admit('a')).toEqual({ ok: true })
  expect(r.size).toBe(1)
})

test('ConnectionRateLimiter memory is bounded: at most maxAddresses per second, then new addresses are refused', () => {
  let now = 0
  const r = new ConnectionRateLimiter(10, 1000, () => now)
  for (let i = 0; i < 1000; i++) expect(r.admit(`10.0.${i >> 8}.${i & 255}`).ok).toBe(true)
  expect(r.admit('192.0.2.1')).toEqual({ ok: false, first: false })
  expect(r.admit('10.0.0.0').ok).toBe(true) // known addresses keep their allowance
  expect(r.size).toBe(1000)
  now = 1000
  expect(r.admit('192.0.2.1').ok).toBe(true)
  expect(r.size).toBe(1)
})

test('ConnectionRateLimiter with 0 admits everything and tracks nothing', () => {
  const r = new ConnectionRateLimiter(0)
  for (let i = 0; i < 100; i++) expect(r.admit('a').ok).toBe(true)
  expect(r.size).toBe(0)
})

test('topicTooLong counts UTF-8 bytes; 0 means no limit', () => {
  expect(topicTooLong('a'.repeat(10), 10)).toBe(false)
  expect(topicTooLong('a'.repeat(11), 10)).toBe(true)
  expect(topicTooLong('é'.repeat(5), 10)).toBe(false)
  expect(topicTooLong('é'.repeat(6), 10)).toBe(true)
  expect(topicTooLong('€'.repeat(4), 10)).toBe(true) // 12 bytes
  expect(topicTooLong('😀'.repeat(2), 8)).toBe(false) // 8 bytes, 4 UTF-16 units
  expect(topicTooLong('😀'.repeat(3), 8)).toBe(true)
  expect(topicTooLong('x'.repeat(70_000), 0)).toBe(false)
})

test('capReadBatch hands out at most N complete packets per read, cuts only between packets, and loses no byte', async () => {
  const { capReadBatch } = await import('../../src/broker/limits.js')
  const mqttPacket = (await import('mqtt-packet')).default
  const packets: Buffer[] = []
  for (let i = 0; i < 500; i++) {
    const size = [0, 1, 10, 127, 128, 300, 16_383, 16_384, 20_000][i % 9]!
    packets.push(i % 7 === 0
      ? mqttPacket.generate({ cmd: 'pingreq' })
      : mqttPacket.generate({ cmd: 'publish', topic: `t/${i}`, payload: Buffer.alloc(size, i & 0xff), qos: 0, retain: false, dup: false }))
  }
  const all = Buffer.concat(packets)
  const bounds = new Set<number>([0])
  let acc = 0
  for (const p of packets) { acc += p.length; bounds.add(acc) }
  for (const seed of [1, 2, 3, 4, 5]) {
    // the socket delivers the bytes in chunks of random sizes (1 byte .. 40 KB), as TCP may
    let rnd = seed
    const next = () => { rnd = (rnd * 1103515245 + 12345) % 2 ** 31; return rnd }
    const chunks: Buffer[] = []
    for (let at = 0; at < all.length;) { const n = 1 + next() % (next() % 3 === 0 ? 5 : 40_000); chunks.push(all.subarray(at, at + n)); at += n }
    const stream = { read: (_size?: number): unknown => chunks.shift() ?? null }
    capReadBatch(stream, 8)
    const out: Buffer[] = []
    let pos = 0
    for (let r = stream.read() as Buffer | null; r !== null; r = stream.read() as Buffer | null) {
      out.push(r)
      const start = pos
      pos += r.length
      // at most 8 packets start and end in one read (+1: the end of a packet begun in an earlier read)
      expect([...bounds].filter(b => b > start && b <= pos).length).toBeLessThanOrEqual(8 + 1)
    }
    expect(Buffer.concat(out).equals(all)).toBe(true)
    expect(out.length).toBeGreaterThan(packets.length / 8) // it did cut
  }
})

test('capReadBatch holds back only from a complete packet: a held-back part never ends a read with nothing to handle', async () => {
  // aedes reads again only when a batch's packets are handled (read-loop.ts): a read of only a partial packet would
  // end the reading while the rest of it waits in the socket
  const { capReadBatch } = await import('../../src/broker/limits.js')
  const mqttPacket = (await import('mqtt-packet')).default
  const p = (i: number): Buffer => mqttPacket.generate({ cmd: 'publish', topic: `t/${i}`, payload: Buffer.alloc(10, i), qos: 0, retain: false, dup: false })
  const [a, b, c, d] = [p(1), p(2), p(3), p(4)]
  // one read: a b + the first half of d; the next: the rest of d. Cap 2: no cut before half a packet
  const chunks = [Buffer.concat([a!, b!, d!.subarray(0, 5)]), d!.subarray(5)]
  const stream = { read: (_size?: number): unknown => chunks.shift() ?? null }
  capReadBatch(stream, 2)
  expect(stream.read()).toEqual(Buffer.concat([a!, b!, d!.subarray(0, 5)]))
  expect(stream.read()).toEqual(d!.subarray(5))
  expect(stream.read()).toBeNull()
  // three complete ones and half of a fourth, cap 1: the cut after the first holds back b, c and half of d
  chunks.push(Buffer.concat([a!, b!, c!, d!.subarray(0, 5)]), d!.subarray(5))
  const s2 = { read: (_size?: number): unknown => chunks.shift() ?? null }
  capReadBatch(s2, 1)
  expect(s2.read()).toEqual(a)
  expect(s2.read()).toEqual(b)
  expect(s2.read()).toEqual(Buffer.concat([c!, d!.subarray(0, 5)]))
  expect(s2.read()).toEqual(d!.subarray(5))
})
