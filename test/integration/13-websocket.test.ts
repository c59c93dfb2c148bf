import { test, expect } from 'vitest'
import WebSocket from 'ws'
import { once } from 'node:events'
import mqttPacket from 'mqtt-packet'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, collect } from '../helpers/mqtt.js'

const CONF = 'listener 0 127.0.0.1\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n'

test('MQTT.js over WebSocket on /mqtt exchanges messages with a TCP client', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const ws = await connect(b.url('ws'), { clientId: 'browser' }, onTestFinished)
  const tcp = await connect(b.url('tcp'), { clientId: 'device' }, onTestFinished)
  const gw = collect(ws); const gt = collect(tcp)
  await ws.subscribeAsync('dev/+/telemetry', { qos: 1 })
  await tcp.subscribeAsync('dev/+/commands', { qos: 2 })
  await tcp.publishAsync('dev/1/telemetry', '{"t":21.5}', { qos: 1 })
  await ws.publishAsync('dev/1/commands', 'reboot', { qos: 2 })
  expect((await gw.take(1)).map(m => [m.topic, m.payload, m.qos])).toEqual([['dev/1/telemetry', '{"t":21.5}', 1]])
  expect((await gt.take(1)).map(m => [m.topic, m.payload, m.qos])).toEqual([['dev/1/commands', 'reboot', 2]])
})

async function wsHandshake (url: string, protocols: string[]): Promise<{ protocol: string, connack: Buffer }> {
  const ws = new WebSocket(url, protocols)
  await once(ws, 'open')
  ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw-ws', keepalive: 30 }))
  // [MQTT-6.0.0-x] a WebSocket frame may carry part of a packet: read until the 4 bytes of CONNACK are in
  const chunks: Buffer[] = []
  await new Promise<void>(resolve => ws.on('message', (d: Buffer) => { chunks.push(d); if (Buffer.concat(chunks).length >= 4) resolve() }))
  const data = Buffer.concat(chunks)
  const protocol = ws.protocol
  ws.close()
  return { protocol, connack: data }
}

test.each([
  ['/mqtt', ['mqtt'], 'mqtt'],
  ['/', ['mqtt'], 'mqtt'],
  ['/mqtt', ['mqttv3.1'], 'mqttv3.1'],
  ['/mqtt', ['mqttv3.1', 'mqtt'], 'mqtt']
])('path %s with sub-protocols %j negotiates %s and answers CONNACK 0', async (path, protocols, expected) => {
  const b = await startTestBroker(CONF)
  try {
    const base = b.url('ws').replace(/\/mqtt$/, '')
    const r = await wsHandshake(base + path, protocols)
    expect(r.protocol).toBe(expected)
    expect(r.connack).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]))
  } finally { await b.close() }
})

test('an unknown path is refused with 404 and an unknown sub-protocol is refused', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const base = b.url('ws').replace(/\/mqtt$/, '')
  const bad = new WebSocket(base + '/nope', ['mqtt'])
  const [, res] = await once(bad, 'unexpected-response') as [unknown, { statusCode: number }]
  expect(res.statusCode).toBe(404)
  const wrong = new WebSocket(base + '/mqtt', ['chat'])
  const [err] = await once(wrong, 'error') as [Error]
  expect(err.message).toMatch(/Server sent no subprotocol|Unexpected server response|400/)
})

test('garbage in a WebSocket frame closes that connection only', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const good = await connect(b.url('ws'), { clientId: 'good' }, onTestFinished)
  const ws = new WebSocket(b.url('ws'), ['mqtt'])
  await once(ws, 'open')
  ws.send(Buffer.from([0x00, 0x00, 0xff]))
  await once(ws, 'close')
  const g = collect(good)
  await good.subscribeAsync('ok')
  await good.publishAsync('ok', 'fine')
  expect((await g.take(1)).map(m => m.payload)).toEqual(['fine'])
})
