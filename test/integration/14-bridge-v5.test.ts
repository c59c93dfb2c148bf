/**
 * MQTT 5 properties through a v5 bridge (`bridge_protocol_version mqttv50`) to Debian's mosquitto: User Properties,
 * Content Type, Payload Format Indicator, Response Topic, Correlation Data and Message Expiry (the remaining
 * interval) pass out and in, live and through the bridge queue across a SIGKILL of Midge; a message that expires
 * while queued is not sent.
 */
import { test, expect } from 'vitest'
import { userInfo } from 'node:os'
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import { connect } from '../helpers/mqtt.js'
import { tempDir } from '../helpers/start-broker.js'
import { freePort, spawnMidge, spawnMosquitto, writeConf, type Daemon } from '../helpers/processes.js'

const PROPS = {
  payloadFormatIndicator: true,
  contentType: 'application/json',
  responseTopic: 'reply/here',
  correlationData: Buffer.from([0, 1, 2, 0xff]),
  userProperties: { site: 'kitchen', tag: ['a', 'b'] }
}
/** Long enough not to run out during the test; short enough to see the time spent queued taken off. */
const EXPIRY_S = 600
/** Runs out while the remote is down. */
const SHORT_EXPIRY_S = 1

/** Every message a client receives, with its properties, from its CONNECT on (a returning session's first ones come with the CONNACK). */
function packetsOf (c: MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = []
  c.on('message', (_t, _p, packet) => got.push(packet))
  return got
}

async function connectWatching (url: string, opts: IClientOptions): Promise<{ client: MqttClient, got: IPublishPacket[] }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
  const got = packetsOf(client)
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject) })
  return { client, got }
}

function expectProps (p: IPublishPacket | undefined, payload: string): void {
  expect(p?.payload.toString()).toBe(payload)
  const { messageExpiryInterval, ...rest } = p!.properties ?? {}
  expect(rest).toEqual(PROPS)
  expect(messageExpiryInterval).toBeGreaterThan(0)
}

test('v5 properties pass out and in, live and through the queue across a SIGKILL', { timeout: 90_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-v5-')
  onTestFinished(remove)
  const port = await freePort()
  const mconf = await writeConf(dir, `user ${userInfo().username}\nlog_dest stderr\npersistence true\npersistence_location ${dir}/\nlistener ${port} 127.0.0.1\nallow_anonymous true\n`, 'mosquitto.conf')
  let remote: Daemon | undefined = await spawnMosquitto(mconf)
  onTestFinished(async () => { await remote?.stop() })
  const remoteUrl = `mqtt://127.0.0.1:${port}`
  const conf = await writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/midge`,
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid pi', 'bridge_protocol_version mqttv50', 'restart_timeout 1',
    'topic up/# out 1', 'topic down/# in 1'
  ].join('\n'))
  let midge = await spawnMidge(conf, dir)
  onTestFinished(async () => { await midge.kill('SIGKILL') })
  await midge.logged(/Bridge cloud: connected to/)

  // the watcher's persistent v5 session on the remote keeps what arrives while it is away
  const v5 = { protocolVersion: 5 as const }
  const watcherOpts = { ...v5, clientId: 'watcher', clean: false, properties: { sessionExpiryInterval: 3600 } }
  let { client: watcher, got: up } = await connectWatching(remoteUrl, watcherOpts)
  await watcher.subscribeAsync('up/#', { qos: 1 })
  const local = await connect(midge.url(), { ...v5, clientId: 'local' })
  const down = packetsOf(local)
  await local.subscribeAsync('down/#', { qos: 1 })

  // out, live
  await local.publishAsync('up/live', 'out-live', { qos: 1, properties: { ...PROPS, messageExpiryInterval: EXPIRY_S } })
  await expect.poll(() => up.length, { timeout: 10_000 }).toBe(1)
  expectProps(up[0], 'out-live')
  expect(up[0]!.properties!.messageExpiryInterval).toBeLessThanOrEqual(EXPIRY_S)
  // in, live
  const remotePub = await connect(remoteUrl, { ...v5, clientId: 'remote-pub' })
  await remotePub.publishAsync('down/live', 'in-live', { qos: 1, properties: { ...PROPS, messageExpiryInterval: EXPIRY_S } })
  await expect.poll(() => down.length, { timeout: 10_000 }).toBe(1)
  expectProps(down[0], 'in-live')
  expect(down[0]!.properties!.messageExpiryInterval).toBeLessThanOrEqual(EXPIRY_S)
  await remotePub.endAsync()
  await local.endAsync()
  await watcher.endAsync()

  // remote down: queued, then Midge is killed and restarted
  await remote.stop()
  remote = undefined
  await midge.logged(/Bridge cloud: connection to 127\.0\.0\.1:\d+ lost/)
  const queuedAt = Date.now()
  const pub = await connect(midge.url(), { ...v5, clientId: 'pub' })
  await pub.publishAsync('up/short', 'expires', { qos: 1, properties: { ...PROPS, messageExpiryInterval: SHORT_EXPIRY_S } })
  await pub.publishAsync('up/queued', 'out-queued', { qos: 1, properties: { ...PROPS, messageExpiryInterval: EXPIRY_S } })
  await pub.endAsync()
  await midge.kill('SIGKILL')
  midge = await spawnMidge(conf, dir)
  expect(midge.output()).toMatch(/Bridge cloud: 2 message\(s\) from the last run are queued for the remote\./)
  // past the short expiry before the remote comes back
  await new Promise(resolve => setTimeout(resolve, SHORT_EXPIRY_S * 1000 + 1000))
  remote = await spawnMosquitto(mconf)
  ;({ client: watcher, got: up } = await connectWatching(remoteUrl, watcherOpts))
  await midge.logged(/Bridge cloud: connected to/)
  // a barrier through the bridge: everything queued before it has arrived once it has
  const pub2 = await connect(midge.url(), { ...v5, clientId: 'pub2' })
  await pub2.publishAsync('up/barrier', 'barrier', { qos: 1 })
  await pub2.endAsync()
  await expect.poll(() => up.some(p => p.payload.toString() === 'barrier'), { timeout: 15_000 }).toBe(true)
  expect(up.map(p => p.payload.toString())).toEqual(['out-queued', 'barrier'])
  expectProps(up[0], 'out-queued')
  const spentS = Math.floor((Date.now() - queuedAt) / 1000)
  expect(up[0]!.properties!.messageExpiryInterval).toBeLessThanOrEqual(EXPIRY_S - spentS + 1)
  expect(midge.output()).not.toMatch(/larger than/)
  await watcher.endAsync()
})
