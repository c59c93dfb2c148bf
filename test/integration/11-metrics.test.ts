/** GET /metrics (Prometheus text format) and GET /healthz on websockets listeners, checked against what the test did. */
import { test, expect } from 'vitest'
import { once } from 'node:events'
import { writeFileSync, readFileSync } from 'node:fs'
import https from 'node:https'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import net, { type Socket } from 'node:net'
import mqtt from 'mqtt'
import WebSocket from 'ws'
import mqttPacket from 'mqtt-packet'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { VERSION } from '../../src/version.js'
import { makeTestCerts } from '../helpers/certs.js'

const CONF = [
  'sys_interval 0',
  'per_listener_settings true',
  'listener 0 127.0.0.1', 'allow_anonymous true',
  'listener 0 127.0.0.1', 'protocol websockets', 'allow_anonymous true',
  'listener 0 127.0.0.1', 'allow_anonymous false', 'password_file {dir}/passwd'
].join('\n') + '\n'

type Samples = Map<string, number>

/** Parses the Prometheus text format into `name{labels}` -> value (labels as printed by prom-client). */
function parseMetrics (text: string): Samples {
  const out: Samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`)
    out.set(m[1]!, Number(m[2]))
  }
  return out
}

function httpBase (b: TestBroker): string {
  return `http://127.0.0.1:${b.port('ws')}`
}

async function scrape (b: TestBroker): Promise<Samples> {
  const res = await fetch(`${httpBase(b)}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return parseMetrics(await res.text())
}

/** A broker with CONF and a password file holding alice:secret (made by mosquitto_passwd). */
async function startWithPasswd (onFinished: (fn: () => Promise<void>) => void): Promise<TestBroker> {
  const { dir, remove } = await tempDir('midge-metrics-')
  onFinished(remove)
  const pw = join(dir, 'passwd')
  writeFileSync(pw, '')
  execFileSync('mosquitto_passwd', ['-b', pw, 'alice', 'secret'])
  const b = await startTestBroker(CONF.replaceAll('{dir}/passwd', pw))
  onFinished(() => b.close())
  return b
}

test.concurrent('metrics say what happened: clients, publishes, packets, per-listener connections', async ({ onTestFinished }) => {
  const b = await startWithPasswd(onTestFinished)
  const before = await scrape(b)
  expect(before.get(`midge_info{version="${VERSION}"}`)).toBe(1)
  expect(before.get('process_cpu_user_seconds_total')).toBeGreaterThan(0) // prom-client's process metrics
  expect(before.get('midge_clients_connected')).toBe(0)
  expect(before.get('midge_publish_messages_received_total')).toBe(0)
  expect(before.get('midge_listener_connections{listener="tcp:0"}')).toBe(0)

  const clients = await Promise.all([1, 2, 3].map(i => mqtt.connectAsync(b.url('tcp'), { reconnectPeriod: 0, clientId: `m${i}` })))
  onTestFinished(async () => { await Promise.all(clients.map(c => c.endAsync(true))) })
  await clients[0]!.subscribeAsync('m/#', { qos: 1 })
  await clients[1]!.subscribeAsync('m/#', { qos: 0 })
  const N = 5
  const got = new Promise<void>(resolve => { let n = 0; clients[0]!.on('message', () => { if (++n === N) resolve() }) })
  const got2 = new Promise<void>(resolve => { let n = 0; clients[1]!.on('message', () => { if (++n === N) resolve() }) })
  for (let i = 0; i < N; i++) await clients[2]!.publishAsync(`m/${i}`, 'x'.repeat(20), { qos: 1 })
  await Promise.all([got, got2])

  const after = await scrape(b)
  expect(after.get('midge_clients_connected')).toBe(3)
  expect(after.get('midge_clients_connected_by_protocol{version="3.1.1"}')).toBe(3)
  expect(after.get('midge_clients_connected_by_protocol{version="5.0"}')).toBe(0)
  expect(after.get('midge_clients_maximum')).toBe(3)
  expect(after.get('midge_listener_connections{listener="tcp:0"}')).toBe(3)
  expect(after.get('midge_listener_connections{listener="ws:0"}')).toBe(0)
  expect(after.get('midge_listener_connections_total{listener="tcp:0"}')).toBe(3)
  expect(after.get('midge_connections_total')).toBe(3)
  expect(after.get('midge_subscriptions')).toBe(2)
  expect(after.get('midge_publish_messages_received_total')).toBe(N)
  expect(after.get('midge_publish_bytes_received_total')).toBe(N * 20)
  expect(after.get('midge_publish_messages_sent_total')).toBe(2 * N)
  expect(after.get('midge_publish_bytes_sent_total')).toBe(2 * N * 20)
  // packets in: 3 CONNECT, 2 SUBSCRIBE, N PUBLISH, N PUBACK from the QoS 1 subscriber
  expect(after.get('midge_messages_received_total')).toBe(3 + 2 + N + N)
  // packets out: 3 CONNACK, 2 SUBACK, N PUBACK to the publisher, 2N PUBLISH
  expect(after.get('midge_messages_sent_total')).toBe(3 + 2 + N + 2 * N)
  // scraping changes none of the MQTT counters
  const again = await scrape(b)
  expect(again.get('midge_messages_sent_total')).toBe(after.get('midge_messages_sent_total'))
})

test.concurrent('bytes counters equal what the clients\' sockets carried, for TCP and WebSocket (upgrade included)', async ({ onTestFinished }) => {
  const b = await startWithPasswd(onTestFinished)
  const raw = await RawClient.connect(b.port('tcp'))
  await raw.connectMqtt({ clientId: 'bytes-tcp' })
  raw.send({ cmd: 'publish', topic: 'b/1', payload: Buffer.alloc(300), qos: 0, retain: false })
  await raw.ping()
  const ws = new WebSocket(`ws://127.0.0.1:${b.port('ws')}/mqtt`, 'mqtt')
  await once(ws, 'open')
  ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'bytes-ws', keepalive: 0 }))
  await once(ws, 'message')
  ws.send(mqttPacket.generate({ cmd: 'pingreq' }))
  await once(ws, 'message')
  const wsSocket = (ws as unknown as { _socket: Socket })._socket
  const m = await scrape(b)
  expect(m.get('midge_bytes_received_total')).toBe(raw.socket.bytesWritten + wsSocket.bytesWritten)
  expect(m.get('midge_bytes_sent_total')).toBe(raw.socket.bytesRead + wsSocket.bytesRead)
  // closed connections keep their bytes in the totals
  raw.end()
  ws.close()
  await Promise.all([raw.closed, once(ws, 'close')])
  const sentBytes = raw.socket.bytesWritten + wsSocket.bytesWritten
  for (;;) {
    const n = await scrape(b)
    if (n.get('midge_listener_connections{listener="tcp:0"}') === 0 && n.get('midge_listener_connections{listener="ws:0"}') === 0) {
      expect(n.get('midge_bytes_received_total')).toBe(sentBytes)
      break
    }
    await new Promise(resolve => setImmediate(resolve))
  }
})

test.concurrent('refused CONNECTs are counted per listener and return code', async ({ onTestFinished }) => {
  const b = await startWithPasswd(onTestFinished)
  const secured = b.broker.bound[2]!.address.port
  const refuse = async (opts: Record<string, unknown>): Promise<number> => {
    const c = await RawClient.connect(secured)
    const ack = await c.connectMqtt(opts)
    c.end()
    return (ack as { returnCode: number }).returnCode
  }
  expect(await refuse({ clientId: 'anon' })).toBe(5)
  expect(await refuse({ clientId: 'wrong', username: 'alice', password: Buffer.from('nope') })).toBe(5)
  expect(await refuse({ clientId: 'right', username: 'alice', password: Buffer.from('secret') })).toBe(0)
  const m = await scrape(b)
  expect(m.get('midge_auth_failures_total{listener="tcp:0-2"}')).toBe(2)
  expect(m.get('midge_connack_refused_total{listener="tcp:0-2",code="5"}')).toBe(2)
  expect(m.get('midge_auth_failures_total{listener="tcp:0"}')).toBe(0)
})

test.concurrent('/healthz: 200 while the store takes writes, 503 once it does not', async ({ onTestFinished }) => {
  const b = await startTestBroker('sys_interval 0\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\npersistence true\npersistence_location {dir}\n')
  onTestFinished(() => b.close())
  const ok = await fetch(`${httpBase(b)}/healthz`)
  expect([ok.status, await ok.json()]).toEqual([200, { status: 'ok' }])
  // the probe leaves nothing behind in the retained store
  const m = await scrape(b)
  expect(m.get('midge_retained_messages')).toBe(0)
  await b.broker.persistence.close()
  const bad = await fetch(`${httpBase(b)}/healthz`)
  expect(bad.status).toBe(503)
  expect(((await bad.json()) as { status: string }).status).toBe('error')
})

test.concurrent('http_metrics false hides /metrics on that listener only; other methods get 405', async ({ onTestFinished }) => {
  const b = await startTestBroker('sys_interval 0\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\nhttp_metrics false\n')
  onTestFinished(() => b.close())
  expect((await fetch(`${httpBase(b)}/metrics`)).status).toBe(404)
  expect((await fetch(`${httpBase(b)}/healthz`)).status).toBe(200)
  expect((await fetch(`${httpBase(b)}/healthz`, { method: 'POST' })).status).toBe(405)
})

test.concurrent('publishes dropped by a full offline queue (max_queued_messages) are counted as dropped', async ({ onTestFinished }) => {
  const b = await startTestBroker('sys_interval 0\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\nmax_queued_messages 2\n')
  onTestFinished(() => b.close())
  const url = b.url('ws')
  const sub = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'offline', clean: false })
  await sub.subscribeAsync('q/#', { qos: 1 })
  await sub.endAsync()
  const pub = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'filler' })
  onTestFinished(async () => { await pub.endAsync(true) })
  for (let i = 0; i < 5; i++) await pub.publishAsync(`q/${i}`, 'x', { qos: 1 })
  const m = await scrape(b)
  expect(m.get('midge_publish_messages_dropped_total')).toBe(3)
  expect(m.get('midge_clients_disconnected')).toBe(1)
})

test.concurrent('protocol http: an HTTP-only listener serves /metrics and /healthz, and refuses MQTT and WebSocket', async ({ onTestFinished }) => {
  const b = await startTestBroker('sys_interval 0\nlistener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\n')
  onTestFinished(() => b.close())
  const http = b.broker.url('http')
  expect(http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
  const c = await mqtt.connectAsync(b.url('tcp'), { reconnectPeriod: 0, clientId: 'on-tcp' })
  onTestFinished(async () => { await c.endAsync(true) })
  const res = await fetch(`${http}/metrics`)
  expect(res.status).toBe(200)
  const m = parseMetrics(await res.text())
  expect(m.get('midge_clients_connected')).toBe(1)
  expect(m.get('midge_listener_connections{listener="http:0"}')).toBe(0)
  expect(await (await fetch(`${http}/healthz`)).json()).toEqual({ status: 'ok' })
  // an MQTT client gets an HTTP error and the connection closes
  const sock = net.connect(b.broker.bound[1]!.address.port, '127.0.0.1')
  await once(sock, 'connect')
  const answer: Buffer[] = []
  sock.on('data', (d: Buffer) => answer.push(d))
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'lost', keepalive: 60 }))
  await once(sock, 'close')
  expect(Buffer.concat(answer).toString('latin1')).toMatch(/^HTTP\/1\.1 400 Bad Request/)
  const ws = new WebSocket(`${http.replace('http', 'ws')}/mqtt`, 'mqtt')
  const [err] = await once(ws, 'error') as [Error]
  expect(err.message).toBe('Unexpected server response: 404')
})

test.concurrent('protocol http with certfile/keyfile serves /healthz over HTTPS', async ({ onTestFinished }) => {
  const certs = makeTestCerts()
  onTestFinished(async () => certs.remove())
  const b = await startTestBroker(`sys_interval 0\nlistener 0 127.0.0.1\nprotocol http\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\n`)
  onTestFinished(() => b.close())
  expect(b.broker.url('https')).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
  const body = await new Promise<string>((resolve, reject) => {
    https.get(`${b.broker.url('https')}/healthz`, { ca: readFileSync(certs.ca) }, res => {
      let s = ''
      res.setEncoding('utf8').on('data', (d: string) => { s += d }).on('end', () => resolve(`${res.statusCode} ${s}`))
    }).on('error', reject)
  })
  expect(body).toBe('200 {"status":"ok"}\n')
})

test.concurrent('connected clients per protocol version: 3.1, 3.1.1 and 5.0 side by side', async ({ onTestFinished }) => {
  const b = await startWithPasswd(onTestFinished)
  const clients = await Promise.all(([[3, 'p3'], [4, 'p4'], [5, 'p5a'], [5, 'p5b']] as const).map(([v, id]) =>
    mqtt.connectAsync(b.url('tcp'), { reconnectPeriod: 0, clientId: id, protocolVersion: v, ...(v === 3 ? { protocolId: 'MQIsdp' } : {}) })))
  onTestFinished(async () => { await Promise.all(clients.map(c => c.endAsync(true))) })
  const m = await scrape(b)
  expect(['3.1', '3.1.1', '5.0'].map(v => m.get(`midge_clients_connected_by_protocol{version="${v}"}`))).toEqual([1, 1, 2])
})
