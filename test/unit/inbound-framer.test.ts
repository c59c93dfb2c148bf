/**
 * The inbound framer (src/broker/inbound-framer.ts) on in-memory streams: what a reader (aedes) gets from each
 * `read()`, with the bytes cut where the socket tests cannot choose: the guard, the packet counter, the read cap and
 * the packets taken out for enhanced authentication.
 */
import { test, expect } from 'vitest'
import { Duplex } from 'node:stream'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { installInboundFramer, type AuthStage, type FramerControl, type FramerOptions, type GuardError } from '../../src/broker/inbound-framer.js'
import { MAX_REMAINING_LENGTH } from '../../src/mqtt/frames.js'
import { countPackets } from '../../src/sys/wire.js'

const gen = (p: Record<string, unknown>, protocolVersion = 4): Buffer => mqttPacket.generate(p as unknown as Packet, { protocolVersion })
const connectOf = (protocolVersion: number, protocolId = 'MQTT'): Buffer =>
  gen({ cmd: 'connect', protocolId, protocolVersion, clean: true, clientId: 'c', keepalive: 60 }, protocolVersion === 5 ? 5 : 4)
const CONNECT = connectOf(4)
const publish = (i: number, size = 3): Buffer => gen({ cmd: 'publish', topic: `t/${i}`, payload: Buffer.alloc(size, i & 0xff), qos: 0, retain: false, dup: false })
const AUTH = gen({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'M', authenticationData: Buffer.from('again') } }, 5)

interface Framed { stream: Duplex, counter: { count: number }, violations: GuardError[], feed: (b: Buffer) => Buffer | null }

/** A connection whose bytes are pushed by the test; `feed` pushes and reads once, as aedes would. */
function framed (opts: Partial<FramerOptions> = {}, stage?: (framer: FramerControl) => AuthStage): Framed {
  const stream = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  const counter = { count: 0 }
  const violations: GuardError[] = []
  installInboundFramer(stream, {
    maxRemainingLength: MAX_REMAINING_LENGTH,
    acceptVersions: [3, 4, 5],
    maxPackets: 16,
    counter,
    onViolation: (err, s) => { violations.push(err); s.destroy() },
    ...opts
  }, stage)
  const feed = (b: Buffer): Buffer | null => {
    stream.push(b)
    return stream.read() as Buffer | null
  }
  return { stream, counter, violations, feed }
}

/** A stream whose reads return exactly `chunks`, one per read, as a socket may cut them. */
function chunked (chunks: Buffer[], maxPackets: number): Duplex {
  const stream = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  stream.read = (_size?: number): Buffer | null => chunks.shift() ?? null
  installInboundFramer(stream, { maxRemainingLength: MAX_REMAINING_LENGTH, acceptVersions: [3, 4, 5], maxPackets, onViolation: err => { throw err } })
  return stream
}

test('a CONNECT cut anywhere reaches the reader whole and in order, counted once', () => {
  for (let cut = 0; cut <= CONNECT.length; cut++) {
    const f = framed()
    const a = f.feed(CONNECT.subarray(0, cut))
    const b = f.feed(CONNECT.subarray(cut))
    expect([cut, Buffer.concat([a ?? Buffer.alloc(0), b ?? Buffer.alloc(0)])]).toEqual([cut, CONNECT])
    expect(f.counter.count).toBe(1)
    expect(f.violations).toEqual([])
  }
})

test('a CONNECT with a protocol level the listener does not accept is refused wherever it is cut', () => {
  for (const [bytes, level, accept] of [[connectOf(3, 'MQIsdp'), 3, [4, 5]], [connectOf(5), 5, [3, 4]]] as const) {
    for (let cut = 1; cut < 12; cut++) {
      const f = framed({ acceptVersions: accept })
      f.feed(bytes.subarray(0, cut))
      expect(f.feed(bytes.subarray(cut))).toBeNull()
      expect([cut, f.violations.map(v => [v.reason, v.protocolLevel])]).toEqual([cut, [['bad-protocol', level]]])
      expect(f.stream.destroyed).toBe(true)
    }
  }
  // an unknown level under a known name, in one chunk
  const bad = Buffer.from(CONNECT)
  bad[8] = 6
  const f = framed()
  expect(f.feed(bad)).toBeNull()
  expect(f.violations.map(v => v.message)).toEqual(['unsupported protocol MQTT level 6'])
})

test('40 small packets in one chunk are read as 16 + 16 + 8, each counted when handed out', () => {
  const f = framed()
  const packets = [CONNECT, ...Array.from({ length: 39 }, (_, i) => publish(i))]
  f.stream.push(Buffer.concat(packets))
  const reads: number[] = []
  const counts: number[] = []
  const out: Buffer[] = []
  for (let r = f.stream.read() as Buffer | null; r !== null; r = f.stream.read() as Buffer | null) {
    reads.push(countPackets([r]))
    counts.push(f.counter.count)
    out.push(r)
  }
  expect(reads).toEqual([16, 16, 8])
  expect(counts).toEqual([16, 32, 40])
  expect(Buffer.concat(out)).toEqual(Buffer.concat(packets))
})

test('Node\'s own read(0) never takes held-back packets', () => {
  const f = framed({ maxPackets: 1 })
  f.stream.push(Buffer.concat([CONNECT, publish(1)]))
  expect(f.stream.read()).toEqual(CONNECT)
  expect(f.stream.read(0)).toBeNull()
  expect(f.stream.read()).toEqual(publish(1))
})

test('a first packet that is not CONNECT closes the connection; the reader gets nothing', () => {
  const f = framed()
  expect(f.feed(publish(1))).toBeNull()
  expect(f.violations.map(v => [v.reason, v.message])).toEqual([['not-connect', 'first packet is not CONNECT (type 3)']])
  expect(f.stream.destroyed).toBe(true)
  expect(f.counter.count).toBe(0)
})

test('an oversized remaining length closes the connection from its header, before the body arrives', () => {
  const header = Buffer.from([0x30, 0x80, 0x80, 0x04]) // remaining length 65536, no body yet
  for (let cut = 0; cut <= header.length; cut++) {
    const f = framed({ maxRemainingLength: 1000 })
    expect(f.feed(CONNECT)).toEqual(CONNECT)
    const first = f.feed(header.subarray(0, cut))
    // a cut inside the header hands the reader those bytes (its parser waits for the rest): nothing is buffered
    if (cut > 0 && cut < header.length) expect(first).toEqual(header.subarray(0, cut))
    if (cut < header.length) expect(f.feed(header.subarray(cut))).toBeNull()
    expect([cut, f.violations.map(v => [v.reason, v.message])]).toEqual([cut, [['too-large', 'packet of 65536 bytes exceeds the limit of 1000']]])
    expect(f.stream.destroyed).toBe(true)
    expect(f.counter.count).toBe(1)
  }
})

test('a fifth remaining-length byte closes the connection', () => {
  const f = framed()
  f.feed(CONNECT)
  expect(f.feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBeNull()
  expect(f.violations.map(v => v.reason)).toEqual(['malformed'])
})

test('an AUTH packet is taken out for enhanced authentication wherever it is cut; the next PUBLISH reaches the reader in order', () => {
  const after = Buffer.concat([publish(1), AUTH, publish(2, 200)])
  for (let cut = 0; cut <= after.length; cut++) {
    let control: FramerControl | undefined
    const connects: Buffer[] = []
    const auths: Buffer[] = []
    const f = framed({}, c => {
      control = c
      return { connect: p => { connects.push(Buffer.from(p)); return true }, held: () => { throw new Error('nothing during the exchange') }, auth: p => { auths.push(Buffer.from(p)) } }
    })
    // the exchange holds the CONNECT back until the stage opens the connection
    expect(f.feed(CONNECT)).toBeNull()
    expect(connects).toEqual([CONNECT])
    control!.open(CONNECT)
    expect(f.stream.read()).toEqual(CONNECT)
    const a = f.feed(after.subarray(0, cut)) ?? Buffer.alloc(0)
    const b = f.feed(after.subarray(cut)) ?? Buffer.alloc(0)
    expect([cut, Buffer.concat([a, b])]).toEqual([cut, Buffer.concat([publish(1), publish(2, 200)])])
    expect(auths).toEqual([AUTH])
    expect(f.counter.count).toBe(4)
  }
})

test('during the exchange every packet goes to the stage whole, and a stage that steps aside leaves the CONNECT to the reader', () => {
  const held: Buffer[] = []
  const f = framed({}, () => ({ connect: () => true, held: p => { held.push(Buffer.from(p)) }, auth: () => { throw new Error('not yet') } }))
  const bytes = Buffer.concat([CONNECT, AUTH, publish(3)])
  for (let i = 0; i < bytes.length; i++) expect(f.feed(bytes.subarray(i, i + 1))).toBeNull()
  expect(held).toEqual([AUTH, publish(3)])

  const all = Buffer.concat([CONNECT, AUTH, publish(4)])
  for (let cut = 0; cut <= all.length; cut++) {
    const connects: Buffer[] = []
    const aside = framed({}, () => ({ connect: p => { connects.push(Buffer.from(p)); return false }, held: () => { throw new Error('no exchange') }, auth: () => { throw new Error('stepped aside') } }))
    const out = [aside.feed(all.subarray(0, cut)), aside.feed(all.subarray(cut))]
    // the CONNECT is held until whole; from it on every byte is the reader's, AUTH included (aedes refuses it)
    if (cut < CONNECT.length) expect(out[0]).toBeNull()
    expect([cut, Buffer.concat(out.filter(b => b !== null))]).toEqual([cut, all])
    expect(connects).toEqual([CONNECT])
  }
})

test('the read cap hands out at most N complete packets per read, cuts only between packets, and loses no byte', () => {
  const packets: Buffer[] = [CONNECT]
  for (let i = 0; i < 500; i++) {
    const size = [0, 1, 10, 127, 128, 300, 16_383, 16_384, 20_000][i % 9]!
    packets.push(i % 7 === 0 ? mqttPacket.generate({ cmd: 'pingreq' }) : publish(i, size))
  }
  const all = Buffer.concat(packets)
  const bounds = new Set<number>([0])
  let acc = 0
  for (const p of packets) { acc += p.length; bounds.add(acc) }
  for (const seed of [1, 2, 3, 4, 5]) {
    // the socket delivers the bytes in chunks of random sizes (1 byte .. 40 KB), as TCP may
    let rnd = seed
    const next = (): number => { rnd = (rnd * 1103515245 + 12345) % 2 ** 31; return rnd }
    const chunks: Buffer[] = []
    for (let at = 0; at < all.length;) { const n = 1 + next() % (next() % 3 === 0 ? 5 : 40_000); chunks.push(all.subarray(at, at + n)); at += n }
    const stream = chunked(chunks, 8)
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

test('the read cap holds back only from a complete packet: a held-back part never ends a read with nothing to handle', () => {
  // aedes reads again only when a batch's packets are handled (read-loop.ts): a read of only a partial packet would
  // end the reading while the rest of it waits in the socket
  const p = (i: number): Buffer => publish(i, 10)
  const [a, b, c, d] = [p(1), p(2), p(3), p(4)]
  // one read: a b + the first half of d; the next: the rest of d. Cap 2: no cut before half a packet
  const chunks = [CONNECT, Buffer.concat([a!, b!, d!.subarray(0, 5)]), d!.subarray(5)]
  const stream = chunked(chunks, 2)
  expect(stream.read()).toEqual(CONNECT)
  expect(stream.read()).toEqual(Buffer.concat([a!, b!, d!.subarray(0, 5)]))
  expect(stream.read()).toEqual(d!.subarray(5))
  expect(stream.read()).toBeNull()
  // three complete ones and half of a fourth, cap 1: the cut after the first holds back b, c and half of d
  const s2 = chunked([CONNECT, Buffer.concat([a!, b!, c!, d!.subarray(0, 5)]), d!.subarray(5)], 1)
  expect(s2.read()).toEqual(CONNECT)
  expect(s2.read()).toEqual(a)
  expect(s2.read()).toEqual(b)
  expect(s2.read()).toEqual(Buffer.concat([c!, d!.subarray(0, 5)]))
  expect(s2.read()).toEqual(d!.subarray(5))
})
