/**
 * Bridges to Debian's mosquitto 2.0.11 as the remote: out, in and both topics with prefixes over MQTT 3.1.1 and 5,
 * TLS with a CA and a client certificate.
 */
import { test, expect, describe, beforeAll, afterAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { startTestBroker, type TestBroker } from '../helpers/start-broker.js'
import { startRemote, bridgeState, type Finished } from '../helpers/bridge.js'
import { connect, collect, subscriber } from '../helpers/mqtt.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'

async function startLocal (conf: string, onFinished: Finished): Promise<TestBroker> {
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\n${conf}`)
  onFinished(() => b.close())
  return b
}

describe.each([
  ['mqttv311', 4],
  ['mqttv50', 5]
] as const)('to mosquitto over %s', (version, protocolVersion) => {
  test('out, in and both topics with prefixes; nothing echoes back', async ({ onTestFinished }) => {
    const remote = await startRemote(onTestFinished)
    const id = `pi-${version}`
    const local = await startLocal([
      'connection cloud',
      `address 127.0.0.1:${remote.port}`,
      `bridge_protocol_version ${version}`,
      `remote_clientid ${id}`,
      'restart_timeout 1',
      'topic sensors/# out 1 pi/ site1/',
      'topic cmd/# in 1 pi/ site1/',
      'topic shared/# both 1 "" ""',
      'topic config both 0 "" sites/pi/'
    ].join('\n'), onTestFinished)
    await bridgeState(remote.url, id, '1', onTestFinished)

    const remoteSub = await subscriber(remote.url, 'remote-sub', '#', 1, onTestFinished)
    const localSub = await subscriber(local.url(), 'local-sub', '#', 1, onTestFinished)
    const localPub = await connect(local.url(), { clientId: 'local-pub' }, onTestFinished)
    const remotePub = await connect(remote.url, { clientId: 'remote-pub', protocolVersion }, onTestFinished)

    // out: pi/sensors/... here is site1/sensors/... there, at the smaller of the two QoS
    await localPub.publishAsync('pi/sensors/temp', '21.5', { qos: 1 })
    await localPub.publishAsync('pi/other', 'not bridged', { qos: 1 })
    await localPub.publishAsync('shared/a', 'from pi', { qos: 1 })
    await localPub.publishAsync('config', 'c1', { qos: 0 })
    const atRemote = await remoteSub.take(3)
    expect(atRemote.map(m => [m.topic, m.payload, m.qos])).toEqual([
      ['site1/sensors/temp', '21.5', 1], ['shared/a', 'from pi', 1], ['sites/pi/config', 'c1', 0]
    ])

    // in: site1/cmd/... there is pi/cmd/... here; shared/# comes back down; sites/pi/config is config here.
    // The bridge delivers in order: once shared/c is here, an echo of shared/a or config would have been too.
    await remotePub.publishAsync('site1/cmd/light', 'on', { qos: 1 })
    await remotePub.publishAsync('site1/sensors/x', 'out only', { qos: 1 })
    await remotePub.publishAsync('shared/b', 'from cloud', { qos: 1 })
    await remotePub.publishAsync('sites/pi/config', 'c2', { qos: 1 })
    await remotePub.publishAsync('shared/c', 'last', { qos: 1 })
    expect((await localSub.take(8)).map(m => [m.topic, m.payload])).toEqual([
      ['pi/sensors/temp', '21.5'], ['pi/other', 'not bridged'], ['shared/a', 'from pi'], ['config', 'c1'],
      ['pi/cmd/light', 'on'], ['shared/b', 'from cloud'], ['config', 'c2'], ['shared/c', 'last']
    ])
    // and what came down did not go back up: the next message out is the 9th the remote sees
    await localPub.publishAsync('pi/sensors/end', 'e', { qos: 1 })
    expect((await remoteSub.take(9)).map(m => m.topic)).toEqual([
      'site1/sensors/temp', 'shared/a', 'sites/pi/config',
      'site1/cmd/light', 'site1/sensors/x', 'shared/b', 'sites/pi/config', 'shared/c', 'site1/sensors/end'
    ])
    // the local subscriber gets it in parallel with the bridge: wait for it, then nothing more is there
    expect((await localSub.take(9)).at(-1)!.topic).toBe('pi/sensors/end')
    expect(localSub.messages).toHaveLength(9)
    // the last PUBACK may still be on its way back
    await expect.poll(() => local.broker.bridges!.view()).toMatchObject([{ name: 'cloud', state: 'connected', queued: 0, sent: 4, received: 4, dropped: 0 }])
  })
})

describe('TLS to the remote', () => {
  let certs: TestCerts
  beforeAll(() => { certs = makeTestCerts() })
  afterAll(() => certs.remove())

  test('with a CA and a client certificate the remote requires', async ({ onTestFinished }) => {
    const remote = await startRemote(onTestFinished, '', `certfile ${certs.server.cert}\nkeyfile ${certs.server.key}\ncafile ${certs.ca}\nrequire_certificate true\nuse_identity_as_username true`)
    const local = await startLocal([
      'connection cloud',
      `address localhost:${remote.port}`,
      'remote_clientid tls-pi',
      'restart_timeout 1',
      `bridge_cafile ${certs.ca}`,
      `bridge_certfile ${certs.alice.cert}`,
      `bridge_keyfile ${certs.alice.key}`,
      'topic up/# out 1'
    ].join('\n'), onTestFinished)
    const remoteUrl = `mqtts://localhost:${remote.port}`
    const opts = { ca: [readFileSync(certs.ca)], cert: readFileSync(certs.alice.cert), key: readFileSync(certs.alice.key) }
    const watcher = await connect(remoteUrl, { clientId: 'watcher', ...opts }, onTestFinished)
    const got = collect(watcher)
    await watcher.subscribeAsync(['up/#', '$SYS/broker/connection/tls-pi/state'], { qos: 1 })
    const state = await got.take(1)
    if (state[0]!.payload !== '1') await got.take(2)
    const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
    await pub.publishAsync('up/x', 'over tls', { qos: 1 })
    await expect.poll(() => got.messages.filter(m => m.topic === 'up/x').map(m => m.payload)).toEqual(['over tls'])
    // the private-bridge flag reached mosquitto, and the certificate named the bridge
    expect(remote.daemon.output()).toMatch(/New bridge connected from 127\.0\.0\.1:\d+ as tls-pi \(p2, c0, k60, u'alice'\)/)
  })
})
