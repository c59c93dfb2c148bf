/**
 * The enhanced-authentication gate (src/broker/enhanced-auth.ts), a stage of the inbound framer
 * (src/broker/inbound-framer.ts), on an in-memory stream, with the bytes cut at every offset: what aedes reads is exactly the other packets, and the AUTH packets reach the hook, whatever the
 * cuts. The socket tests (53-mqtt5-auth) cannot choose where TCP splits.
 */
import { test, expect } from 'vitest'
import { Duplex } from 'node:stream'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { enhancedAuthStage, type EnhancedAuthOutcome } from '../../src/broker/enhanced-auth.js'
import { installInboundFramer, type FramerOptions } from '../../src/broker/inbound-framer.js'
import type { EnhancedAuthRequest, EnhancedAuthAnswer } from '../../src/auth/types.js'
import type { ConnectionContext } from '../../src/listeners/types.js'
import { silentLogger } from '../../src/logging/logger.js'

const METHOD = 'M'
const gen = (p: Record<string, unknown>): Buffer => mqttPacket.generate(p as unknown as Packet, { protocolVersion: 5 })
const CONNECT = gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'c', keepalive: 60, properties: { authenticationMethod: METHOD, authenticationData: Buffer.from('hello'), sessionExpiryInterval: 30 } })
const PUB1 = gen({ cmd: 'publish', topic: 'a', payload: Buffer.from('one'), qos: 0, retain: false, dup: false })
const PUB2 = gen({ cmd: 'publish', topic: 'b', payload: Buffer.alloc(200, 7), qos: 0, retain: false, dup: false })
const REAUTH = gen({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: METHOD, authenticationData: Buffer.from('again') } })

/** A framer that lets every packet through: the gate's behaviour alone is under test. */
const FRAMER: FramerOptions = { maxRemainingLength: 268_435_455, acceptVersions: [3, 4, 5], maxPackets: 16, onViolation: err => { throw err } }

interface Gate { stream: Duplex, written: Buffer[], requests: EnhancedAuthRequest[], accepted: EnhancedAuthOutcome[], feed: (b: Buffer) => Buffer }

function gate (answer: (req: EnhancedAuthRequest) => EnhancedAuthAnswer): Gate {
  const written: Buffer[] = []
  const stream = new Duplex({ read () {}, write (c: Buffer, _e, cb) { written.push(c); cb() } })
  const requests: EnhancedAuthRequest[] = []
  const accepted: EnhancedAuthOutcome[] = []
  installInboundFramer(stream, FRAMER, framer => enhancedAuthStage(stream, framer, {
    ctx: { listener: { id: 'l' } } as unknown as ConnectionContext,
    start: async req => { requests.push(req); return answer(req) },
    accepted: o => accepted.push(o),
    disconnect: () => { throw new Error('unexpected DISCONNECT') },
    timeoutMs: 1000,
    log: silentLogger()
  }))
  /** Pushes bytes and reads what the gate lets through, as aedes would. */
  const feed = (b: Buffer): Buffer => {
    stream.push(b)
    const out = stream.read() as Buffer | null
    return out ?? Buffer.alloc(0)
  }
  return { stream, written, requests, accepted, feed }
}

/** Feeds `bytes` in two reads, cut at `cut`; what the gate let through. */
function feedCut (g: Gate, bytes: Buffer, cut: number): Buffer {
  return Buffer.concat([g.feed(bytes.subarray(0, cut)), g.feed(bytes.subarray(cut))])
}

test('a CONNECT cut anywhere reaches the hook once complete; once allowed, aedes reads it without the two authentication properties', async () => {
  for (let cut = 1; cut < CONNECT.length; cut++) {
    const g = gate(() => ({ result: 'allow', data: Buffer.from('ok') }))
    expect(feedCut(g, CONNECT, cut).length).toBe(0)
    await new Promise(resolve => setImmediate(resolve))
    expect(g.requests.map(r => [r.method, r.data?.toString(), r.reauthenticate])).toEqual([[METHOD, 'hello', false]])
    expect(g.accepted).toEqual([{ method: METHOD, data: Buffer.from('ok') }])
    const parser = mqttPacket.parser()
    const got: Packet[] = []
    parser.on('packet', p => got.push(p))
    parser.parse(g.stream.read() as Buffer)
    expect(got.map(p => [p.cmd, (p as { properties?: object }).properties])).toEqual([['connect', { sessionExpiryInterval: 30 }]])
  }
})

test('after the CONNACK, an AUTH between two PUBLISHes is taken out wherever the bytes are cut', async () => {
  const stream = Buffer.concat([PUB1, REAUTH, PUB2])
  for (let cut = 0; cut <= stream.length; cut++) {
    const g = gate(() => ({ result: 'allow' }))
    g.feed(CONNECT)
    await new Promise(resolve => setImmediate(resolve))
    g.stream.read()
    const out = cut === 0 ? g.feed(stream) : feedCut(g, stream, cut)
    expect([cut, out]).toEqual([cut, Buffer.concat([PUB1, PUB2])])
    await new Promise(resolve => setImmediate(resolve))
    expect(g.requests.map(r => [r.reauthenticate, r.data?.toString()])).toEqual([[false, 'hello'], [true, 'again']])
  }
})
