/**
 * mosquitto's client id options over real sockets: allow_zero_length_clientid, auto_id_prefix, clientid_prefixes,
 * use_username_as_clientid (CONNACK codes as mosquitto 2.0 sends them to 3.1.1 clients).
 */
import { test, expect } from 'vitest'
import { once } from 'node:events'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { connect } from '../helpers/mqtt.js'

const CONNACK = (code: number) => Buffer.from([0x20, 0x02, 0x00, code])

async function connackBytes (port: number, opts: Record<string, unknown>): Promise<Buffer> {
  const c = await RawClient.connect(port)
  try {
    await c.connectMqtt(opts)
    return Buffer.concat(c.received).subarray(0, 4)
  } finally {
    c.end()
  }
}

test('allow_zero_length_clientid false: an empty client id gets CONNACK 2; a named client connects', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nallow_zero_length_clientid false\n')
  onTestFinished(() => b.close())
  expect(await connackBytes(b.port(), { clientId: '' })).toEqual(CONNACK(2))
  expect(await connackBytes(b.port(), { clientId: 'named' })).toEqual(CONNACK(0))
})

test('auto_id_prefix names generated client ids; the default prefix is mosquitto\'s "auto-"', async ({ onTestFinished }) => {
  const b = await startTestBroker('per_listener_settings true\nlistener 0 127.0.0.1\nallow_anonymous true\nauto_id_prefix dev-\nlistener 0 127.0.0.1\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  const ids: string[] = []
  b.broker.aedes.on('client', c => ids.push(c.id))
  for (const bound of b.broker.bound) {
    const c = await RawClient.connect(bound.address.port)
    onTestFinished(() => c.end())
    expect((await c.connectMqtt({ clientId: '' })).returnCode).toBe(0)
  }
  expect(ids.map(id => id.replace(/[0-9a-f-]{36}$/, 'UUID'))).toEqual(['dev-UUID', 'auto-UUID'])
})

test('clientid_prefixes: a client id without the prefix gets CONNACK 5 (not authorised), as in mosquitto', async ({ onTestFinished }) => {
  const b = await startTestBroker('clientid_prefixes plant-\nlistener 0 127.0.0.1\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  expect(await connackBytes(b.port(), { clientId: 'office-1' })).toEqual(CONNACK(5))
  expect(await connackBytes(b.port(), { clientId: 'plant-1' })).toEqual(CONNACK(0))
})

test('use_username_as_clientid: the username is the client id, so one user cannot take over another\'s session', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nuse_username_as_clientid true\n')
  onTestFinished(() => b.close())
  // no username: not authorised
  expect(await connackBytes(b.port(), { clientId: 'x' })).toEqual(CONNACK(5))
  const ids: string[] = []
  b.broker.aedes.on('client', c => ids.push(c.id))
  const alice = await connect(b.url(), { clientId: 'same', username: 'alice' }, onTestFinished)
  const bob = await connect(b.url(), { clientId: 'same', username: 'bob' }, onTestFinished)
  expect(ids).toEqual(['alice', 'bob'])
  // same client id, different usernames: both stay connected (a PINGREQ round trip each)
  await Promise.all([alice.publishAsync('t', 'a', { qos: 1 }), bob.publishAsync('t', 'b', { qos: 1 })])
  expect([alice.connected, bob.connected]).toEqual([true, true])
  // a second connection of alice, whatever client id it sends, takes over alice's session
  const closed = once(alice.stream, 'close')
  await connect(b.url(), { clientId: 'other', username: 'alice' }, onTestFinished)
  await closed
  expect(bob.connected).toBe(true)
})
