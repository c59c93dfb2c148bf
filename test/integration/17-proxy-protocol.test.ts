/**
 * enable_proxy_protocol 1|2 through the built daemon (`npm run build` first): headers as HAProxy's send-proxy and
 * send-proxy-v2 write them (built with proxy-protocol-js), on TCP and TLS listeners; the client's address reaches
 * the log and max_connection_rate; connections without a header are refused.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import mqttPacket from 'mqtt-packet'
import { V1ProxyProtocol, V2ProxyProtocol, INETProtocol, Peer, Command, TransportProtocol, IPv4ProxyAddress, IPv4Address, IPv6ProxyAddress, IPv6Address } from 'proxy-protocol-js'
import { tempDir } from '../helpers/start-broker.js'
import { spawnMidge, writeConf, type Daemon } from '../helpers/processes.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'

let certs: TestCerts
beforeAll(() => { certs = makeTestCerts() }, 60_000)
afterAll(() => certs.remove())

const CONNECT = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'behind-proxy', keepalive: 30 })
const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00])

function v1 (ip: string, port: number): Buffer {
  return Buffer.from(new V1ProxyProtocol(INETProtocol.TCP4, new Peer(ip, port), new Peer('10.0.0.2', 1883)).build(), 'latin1')
}

function v2 (bytes: number[], port: number): Buffer {
  const address = bytes.length === 4
    ? new IPv4ProxyAddress(IPv4Address.createFrom(bytes), port, IPv4Address.createFrom([10, 0, 0, 2]), 1883)
    : new IPv6ProxyAddress(IPv6Address.createFrom(bytes), port, IPv6Address.createFrom(new Array(16).fill(0)), 1883)
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, address).build())
}

/** Sends `header` then CONNECT in one write (as a proxy does when the client is fast); resolves with the first 4 bytes back, or 'closed'. */
async function connectThrough (port: number, header: Buffer): Promise<Buffer | 'closed'> {
  const s = net.connect(port, '127.0.0.1')
  await once(s, 'connect')
  s.write(Buffer.concat([header, CONNECT]))
  return await new Promise(resolve => {
    let got = Buffer.alloc(0)
    s.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); if (got.length >= 4) { s.destroy(); resolve(got.subarray(0, 4)) } })
    s.on('close', () => resolve('closed'))
    s.on('error', () => {})
  })
}

/** Resolves once the daemon's output (so far or to come) matches. */
async function logged (d: Daemon, re: RegExp): Promise<void> {
  if (re.test(d.output())) return
  await d.waitFor(re)
}

async function daemon (conf: string, onFinished: (fn: () => Promise<void>) => void): Promise<Daemon> {
  const { dir, remove } = await tempDir()
  const d = await spawnMidge(await writeConf(dir, conf), dir)
  onFinished(async () => { await d.stop(); await remove() })
  return d
}

test('v2 (IPv4 and IPv6) and v1: the client\'s address is what the broker logs', async ({ onTestFinished }) => {
  const d = await daemon('listener 0 127.0.0.1\nenable_proxy_protocol 2\nlistener 0 127.0.0.1\nenable_proxy_protocol 1\nallow_anonymous true\n', onTestFinished)
  const [p2, p1] = d.ports
  expect(await connectThrough(p2!, v2([203, 0, 113, 7], 40001))).toEqual(CONNACK_OK)
  await logged(d, /New client connected from 203\.0\.113\.7:40001 as behind-proxy/)
  expect(await connectThrough(p2!, v2([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], 40002))).toEqual(CONNACK_OK)
  await logged(d, /New client connected from 2001:db8::9:40002 as behind-proxy/)
  expect(await connectThrough(p1!, v1('198.51.100.20', 40003))).toEqual(CONNACK_OK)
  await logged(d, /New client connected from 198\.51\.100\.20:40003 as behind-proxy/)
  // no header, or the other version's: refused before MQTT, with the reason in the log
  expect(await connectThrough(p2!, Buffer.alloc(0))).toBe('closed')
  expect(await connectThrough(p1!, v2([203, 0, 113, 7], 1))).toBe('closed')
  await logged(d, /Connection refused: no PROXY v1 header \(enable_proxy_protocol 1\)/)
}, 30_000)

test('max_connection_rate counts the client behind the proxy, not the proxy', async ({ onTestFinished }) => {
  const d = await daemon('max_connection_rate 2\nlistener 0 127.0.0.1\nenable_proxy_protocol 2\nallow_anonymous true\n', onTestFinished)
  const port = d.ports[0]!
  const one = v2([203, 0, 113, 50], 1000)
  // six at once: the limiter counts per whole second, so they fall into at most two windows of 2
  const results = await Promise.all(Array.from({ length: 6 }, () => connectThrough(port, one)))
  expect(results.filter(r => r === 'closed').length).toBeGreaterThanOrEqual(2)
  // the same proxy, another client: not limited by the first one's rate
  expect(await connectThrough(port, v2([203, 0, 113, 51], 1000))).toEqual(CONNACK_OK)
  await logged(d, /max_connection_rate \(2\/s\) exceeded by 203\.0\.113\.50/)
}, 30_000)

test('TLS behind a TCP proxy: the PROXY header comes before the handshake', async ({ onTestFinished }) => {
  const d = await daemon(`listener 0 127.0.0.1\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nenable_proxy_protocol 1\nallow_anonymous true\n`, onTestFinished)
  const raw = net.connect(d.ports[0]!, '127.0.0.1')
  await once(raw, 'connect')
  raw.write(v1('192.0.2.33', 50505))
  const s = tls.connect({ socket: raw, ca: readFileSync(certs.ca), servername: 'localhost' })
  onTestFinished(async () => { s.destroy() })
  await once(s, 'secureConnect')
  s.write(CONNECT)
  const [ack] = await once(s, 'data') as [Buffer]
  expect(ack.subarray(0, 4)).toEqual(CONNACK_OK)
  await logged(d, /New client connected from 192\.0\.2\.33:50505 as behind-proxy/)
}, 30_000)

test('websockets listener: a header with the HTTP request in the same write is answered (HAProxy\'s health check: LOCAL, then GET /healthz)', async ({ onTestFinished }) => {
  const d = await daemon('listener 0 127.0.0.1\nprotocol websockets\nenable_proxy_protocol 2\nallow_anonymous true\n', onTestFinished)
  // version 2, command LOCAL, family UNSPEC, no addresses: what HAProxy's check-send-proxy sends
  const local = Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]), Buffer.from([0x20, 0x00, 0x00, 0x00])])
  for (const header of [local, v2([203, 0, 113, 9], 40009)]) {
    const s = net.connect(d.ports[0]!, '127.0.0.1')
    onTestFinished(async () => { s.destroy() })
    await once(s, 'connect')
    s.write(Buffer.concat([header, Buffer.from('GET /healthz HTTP/1.0\r\n\r\n')]))
    let reply = ''
    s.setEncoding('utf8').on('data', (t: string) => { reply += t })
    await once(s, 'end')
    expect(reply.split('\r\n')[0]).toBe('HTTP/1.1 200 OK')
  }
}, 30_000)
