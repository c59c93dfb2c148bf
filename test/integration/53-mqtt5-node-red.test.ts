/**
 * Node-RED 4 (the `node-red` devDependency, run headless as a child process on a flow file in a temp dir) as a real
 * MQTT 5 client of Midge: an mqtt-broker config node with protocol v5, an `mqtt in` node, a function node and an
 * `mqtt out` node. A message with v5 properties goes client -> Midge -> Node-RED -> Midge -> client; what Node-RED
 * saw and what the client gets back are both checked.
 */
import { test, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import mqtt, { type IPublishPacket } from 'mqtt'
import type { Client } from 'aedes'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { watch } from '../helpers/processes.js'

const RED_JS = createRequire(import.meta.url).resolve('node-red/red.js')
const CLIENT_ID = 'node-red-v5'
const EXPIRY_S = 120

/** The function node: what Node-RED received, as JSON in the payload, sent on to nr/out with the same properties. */
const FUNC = `msg.payload = JSON.stringify({ payload: msg.payload, seen: { userProperties: msg.userProperties, contentType: msg.contentType,
  messageExpiryInterval: msg.messageExpiryInterval, responseTopic: msg.responseTopic, correlationData: Buffer.from(msg.correlationData).toString('hex') } });
msg.topic = 'nr/out';
return msg;`

function flows (port: number): unknown[] {
  return [
    { id: 'tab', type: 'tab', label: 'midge' },
    {
      id: 'broker',
      type: 'mqtt-broker',
      name: 'midge',
      broker: '127.0.0.1',
      port: String(port),
      clientid: CLIENT_ID,
      autoConnect: true,
      usetls: false,
      protocolVersion: '5',
      keepalive: '60',
      cleansession: true,
      autoUnsubscribe: true,
      birthTopic: '',
      closeTopic: '',
      willTopic: '',
      userProps: '',
      sessionExpiry: ''
    },
    { id: 'in', type: 'mqtt in', z: 'tab', name: '', topic: 'nr/in', qos: '1', datatype: 'utf8', broker: 'broker', nl: false, rap: true, rh: 0, inputs: 0, wires: [['fn']] },
    { id: 'fn', type: 'function', z: 'tab', name: 'seen', func: FUNC, outputs: 1, wires: [['out']] },
    { id: 'out', type: 'mqtt out', z: 'tab', name: '', topic: '', qos: '1', retain: '', respTopic: '', contentType: '', userProps: '', correl: '', expiry: '', broker: 'broker', wires: [] }
  ]
}

test('Node-RED 4 with its broker node on MQTT 5: user properties, content type, response topic, correlation data and message expiry go through Midge both ways', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { dir, remove } = await tempDir('midge-node-red-')
  onTestFinished(remove)
  writeFileSync(join(dir, 'flows.json'), JSON.stringify(flows(b.port())))
  // headless: no editor, no HTTP nodes, nothing listens; no telemetry
  writeFileSync(join(dir, 'settings.js'), 'module.exports = { flowFile: \'flows.json\', httpAdminRoot: false, httpNodeRoot: false, credentialSecret: false, telemetry: { enabled: false }, logging: { console: { level: \'info\' } } }\n')
  const subscribed = new Promise<void>(resolve => {
    b.broker.aedes.on('subscribe', (subs: Array<{ topic: string }>, c: Client) => {
      if (c.id === CLIENT_ID && subs.some(s => s.topic === 'nr/in')) resolve()
    })
  })
  const connected = new Promise<number>(resolve => {
    b.broker.aedes.on('client', (c: Client) => { if (c.id === CLIENT_ID) resolve(c.version ?? 0) })
  })
  const red = watch(spawn(process.execPath, [RED_JS, '--userDir', dir, '--settings', join(dir, 'settings.js'), '--no-telemetry'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }))
  onTestFinished(async () => { await red.kill('SIGKILL') })
  await Promise.race([subscribed, red.exited.then(e => { throw new Error(`Node-RED exited (${JSON.stringify(e)}):\n${red.output()}`) })])
  expect(await connected).toBe(5)

  const c = await mqtt.connectAsync(b.url(), { protocolVersion: 5, clientId: 'nr-tester', reconnectPeriod: 0 })
  onTestFinished(async () => { await c.endAsync(true) })
  await c.subscribeAsync('nr/out', { qos: 1 })
  const back = new Promise<IPublishPacket>(resolve => c.once('message', (_t, _p, packet) => resolve(packet)))
  const userProperties = { site: 'shed', sensor: ['t1', 't2'] }
  await c.publishAsync('nr/in', '{"t":21.5}', {
    qos: 1,
    properties: { userProperties, contentType: 'application/json', messageExpiryInterval: EXPIRY_S, responseTopic: 'nr/reply', correlationData: Buffer.from('c-1') }
  })
  const p = await back
  // Node-RED keeps one string per user property: a repeated one (both values delivered by Midge) becomes a JSON array
  const asNodeRedKeepsThem = { site: 'shed', sensor: '["t1","t2"]' }
  const body = JSON.parse(p.payload.toString()) as { payload: string, seen: { userProperties: unknown, contentType: string, messageExpiryInterval: number, responseTopic: string, correlationData: string } }
  // Midge -> Node-RED: every property as the client sent it; the expiry is what remained (whole seconds)
  expect(body.payload).toBe('{"t":21.5}')
  expect({ ...body.seen, messageExpiryInterval: undefined }).toEqual({ userProperties: asNodeRedKeepsThem, contentType: 'application/json', messageExpiryInterval: undefined, responseTopic: 'nr/reply', correlationData: Buffer.from('c-1').toString('hex') })
  expect(EXPIRY_S - body.seen.messageExpiryInterval).toBeGreaterThanOrEqual(0)
  expect(EXPIRY_S - body.seen.messageExpiryInterval).toBeLessThanOrEqual(1)
  // Node-RED -> Midge -> client: the same properties, published by Node-RED's mqtt out node
  expect([p.topic, p.qos]).toEqual(['nr/out', 1])
  expect({ ...p.properties, messageExpiryInterval: undefined }).toEqual({ userProperties: asNodeRedKeepsThem, contentType: 'application/json', messageExpiryInterval: undefined, responseTopic: 'nr/reply', correlationData: Buffer.from('c-1') })
  expect(body.seen.messageExpiryInterval - (p.properties?.messageExpiryInterval ?? -1)).toBeGreaterThanOrEqual(0)
  expect(body.seen.messageExpiryInterval - (p.properties?.messageExpiryInterval ?? -1)).toBeLessThanOrEqual(1)
})
