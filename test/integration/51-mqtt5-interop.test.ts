/**
 * MQTT 5 behaviours the Eclipse Paho interoperability suite (client_test5.py) found wrong in Midge on aedes
 * 2.0.0-beta.1, each shown here with exact packets: a will carrying Will Delay Interval, a resumed session losing
 * its queue, a Reason String the suite cannot parse, one Subscription Identifier where several match, and a
 * server DISCONNECT lost to a TCP reset or followed by other packets.
 */
import { test, expect } from 'vitest'
import { once, type EventEmitter } from 'node:events'
import { writeFile } from 'node:fs/promises'
import mqtt, { type MqttClient, type IClientOptions, type IConnackPacket } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import type { AedesPublishPacket } from 'aedes'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'

async function raw5 (port: number, connect: Record<string, unknown> = {}): Promise<RawClient> {
  const c = await RawClient.connect(port, '127.0.0.1', 5)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'raw5', keepalive: 60, ...connect })
  expect((await c.next('connack')).reasonCode).toBe(0)
  return c
}

async function connect5 (url: string, opts: IClientOptions): Promise<{ client: MqttClient, connack: IConnackPacket }> {
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  const [connack] = await once(client as unknown as EventEmitter, 'connect') as [IConnackPacket]
  return { client, connack }
}

test('a will is published without its Will Delay Interval (a CONNECT property, malformed in a PUBLISH); its other properties stay', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const sub = await raw5(b.port(), { clientId: 'sub' })
  onTestFinished(() => sub.end())
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'will/t', qos: 1 }] })
  await sub.next('suback')
  const w = await raw5(b.port(), {
    clientId: 'w',
    will: { topic: 'will/t', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 0, userProperties: { a: '2' } } }
  })
  w.end()
  const p = await sub.next('publish')
  expect([p.topic, p.payload.toString(), p.properties]).toEqual(['will/t', 'gone', { userProperties: { a: '2' } }])
})

test('Clean Start 0 with Session Expiry 0 resumes the session with its queued messages; the session then ends with the connection', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const first = await connect5(b.url(), { clientId: 'resume', clean: true, properties: { sessionExpiryInterval: 300 } })
  await first.client.subscribeAsync('q/#', { qos: 1 })
  await first.client.endAsync()
  const pub = await connect5(b.url(), { clientId: 'pub' })
  onTestFinished(() => pub.client.endAsync(true))
  await pub.client.publishAsync('q/1', 'kept', { qos: 1 })
  const got: string[] = []
  const back = mqtt.connect(b.url(), { protocolVersion: 5, reconnectPeriod: 0, clientId: 'resume', clean: false })
  back.on('message', (t, payload) => got.push(`${t} ${payload.toString()}`))
  const [connack] = await once(back as unknown as EventEmitter, 'connect') as [IConnackPacket]
  expect(connack.sessionPresent).toBe(true)
  if (got.length === 0) await once(back as unknown as EventEmitter, 'message')
  expect(got).toEqual(['q/1 kept'])
  await back.endAsync()
  // expiry 0: nothing of the session is left
  const again = await connect5(b.url(), { clientId: 'resume', clean: false })
  onTestFinished(() => again.client.endAsync(true))
  expect(again.connack.sessionPresent).toBe(false)
})

test('a publish the ACL refuses gets PUBACK 0x87 without a Reason String (mosquitto 2.0.11 sends 40 03 00 07 87 here)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  await writeFile(`${dir}/acl`, 'topic readwrite #\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${dir}/acl\n`)
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  const before = Buffer.concat(c.received).length
  // `#` does not match a `$` topic [MQTT-4.7.2-1]: refused
  c.send({ cmd: 'publish', topic: '$TopicA/B', payload: Buffer.from('x'), qos: 1, messageId: 7 })
  await c.next('puback')
  // an empty property length, where mosquitto omits it: both mean no properties
  expect([...Buffer.concat(c.received).subarray(before)]).toEqual([0x40, 0x04, 0x00, 0x07, 0x87, 0x00])
})

test('a message matching several subscriptions of a client goes out once with every Subscription Identifier [MQTT-3.3.4-3]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  c.send({ cmd: 'subscribe', messageId: 1, properties: { subscriptionIdentifier: 2 }, subscriptions: [{ topic: 'a/b', qos: 1 }] })
  await c.next('suback')
  c.send({ cmd: 'subscribe', messageId: 2, properties: { subscriptionIdentifier: 3 }, subscriptions: [{ topic: 'a/#', qos: 1 }] })
  await c.next('suback')
  c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/+', qos: 0 }] })
  await c.next('suback')
  c.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 1, messageId: 4 })
  const m = await c.next('publish')
  expect((m.properties?.subscriptionIdentifier as number[]).toSorted()).toEqual([2, 3])
  // a topic only one of them matches carries that one
  c.send({ cmd: 'publish', topic: 'a/c/d', payload: Buffer.from('y'), qos: 1, messageId: 5 })
  expect((await c.next('publish')).properties).toEqual({ subscriptionIdentifier: 3 })
  await c.ping()
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('DISCONNECT 0x93 is the last packet sent, and the connection closes without a reset though the client goes on sending', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 2\n')
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  let error: NodeJS.ErrnoException | undefined
  c.socket.on('error', err => { error = err })
  // three QoS 2 messages awaiting PUBREL with a Receive Maximum of 2, in one write
  const burst = [1, 2, 3].map(id => ({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, messageId: id }))
  c.write(Buffer.concat(burst.map(p => mqttGenerate(p))))
  const d = await c.next('disconnect')
  expect(d.reasonCode).toBe(0x93)
  // what a client does with the PUBRECs it read before: it answers them
  c.send({ cmd: 'pubrel', messageId: 1 })
  c.send({ cmd: 'pingreq' })
  await c.closed
  expect(error).toBeUndefined()
  expect(c.packets.map(p => p.cmd)).toEqual([])
})

function mqttGenerate (p: Record<string, unknown>): Buffer {
  return mqttPacket.generate(p as never, { protocolVersion: 5 })
}

test('topic aliases towards a client that announced Topic Alias Maximum: the first PUBLISH on a topic sets one, later ones carry it and no topic; topics beyond the maximum go out in full', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await raw5(b.port(), { properties: { topicAliasMaximum: 2 } })
  onTestFinished(() => c.end())
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'al/#', qos: 2 }] })
  await c.next('suback')
  const sent = ['al/sensor/kitchen/state', 'al/sensor/kitchen/state', 'al/b', 'al/sensor/kitchen/state', 'al/c', 'al/b']
  const got: Array<[string, unknown, string, number]> = []
  // one at a time, so that the order on the wire is the order sent
  for (const [i, topic] of sent.entries()) {
    c.send({ cmd: 'publish', topic, payload: Buffer.from(String(i)), qos: (i % 3) as 0 | 1 | 2, messageId: 10 + i })
    const p = await c.next('publish')
    got.push([p.topic, p.properties?.topicAlias, p.payload.toString(), p.qos])
    if (p.qos === 1) c.send({ cmd: 'puback', messageId: p.messageId })
    if (p.qos === 2) c.send({ cmd: 'pubrec', messageId: p.messageId })
  }
  expect(got).toEqual([
    ['al/sensor/kitchen/state', 1, '0', 0],
    ['', 1, '1', 1],
    ['al/b', 2, '2', 2],
    ['', 1, '3', 0],
    ['al/c', undefined, '4', 1],
    ['', 2, '5', 2]
  ])
})

test('no topic aliases towards a client that announced none, nor past its Maximum Packet Size', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const plain = await raw5(b.port(), { clientId: 'plain' })
  onTestFinished(() => plain.end())
  // a PUBLISH of 'x/1' with payload 'abc' at QoS 0 is 1 + 1 + 2 + 3 + 1 + 3 = 11 bytes; its alias would add 3
  const tight = await raw5(b.port(), { clientId: 'tight', properties: { topicAliasMaximum: 5, maximumPacketSize: 11 } })
  onTestFinished(() => tight.end())
  for (const c of [plain, tight]) {
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/#', qos: 0 }] })
    await c.next('suback')
  }
  plain.send({ cmd: 'publish', topic: 'x/1', payload: Buffer.from('abc'), qos: 0 })
  plain.send({ cmd: 'publish', topic: 'x/1', payload: Buffer.from('abc'), qos: 0 })
  for (const c of [plain, tight]) {
    for (let i = 0; i < 2; i++) {
      const p = await c.next('publish')
      expect([p.topic, p.properties?.topicAlias]).toEqual(['x/1', undefined])
    }
  }
})

test('PUBACK/PUBREC 0x10 for a v5 publish no subscription matches; 0x00 when a connected client, or a session away, subscribes', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const away = await connect5(b.url(), { clientId: 'away', clean: true, properties: { sessionExpiryInterval: 300 } })
  await away.client.subscribeAsync('off/#', { qos: 1 })
  await away.client.endAsync()
  const sub = await raw5(b.port(), { clientId: 'sub' })
  onTestFinished(() => sub.end())
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'some/#', qos: 0 }] })
  await sub.next('suback')
  const c = await raw5(b.port(), { clientId: 'pub' })
  onTestFinished(() => c.end())
  const ack = async (cmd: 'puback' | 'pubrec', topic: string, qos: 1 | 2, messageId: number): Promise<number[]> => {
    const before = Buffer.concat(c.received).length
    c.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, messageId })
    await c.next(cmd)
    return [...Buffer.concat(c.received).subarray(before)]
  }
  expect(await ack('puback', 'nobody/here', 1, 3)).toEqual([0x40, 0x03, 0x00, 0x03, 0x10])
  expect(await ack('pubrec', 'nobody/here', 2, 4)).toEqual([0x50, 0x03, 0x00, 0x04, 0x10])
  c.send({ cmd: 'pubrel', messageId: 4 })
  expect((await c.next('pubcomp')).reasonCode ?? 0).toBe(0)
  expect(await ack('puback', 'some/x', 1, 5)).toEqual([0x40, 0x04, 0x00, 0x05, 0x00, 0x00])
  expect(await ack('puback', 'off/x', 1, 6)).toEqual([0x40, 0x04, 0x00, 0x06, 0x00, 0x00])
})

test('Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK 0x99 and not routed; valid UTF-8 goes through', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pf/#', qos: 1 }] })
  await c.next('suback')
  c.send({ cmd: 'publish', topic: 'pf/bad', payload: Buffer.from([0xff, 0xfe]), qos: 1, messageId: 2, properties: { payloadFormatIndicator: true } })
  const bad = await c.next('puback')
  expect([bad.messageId, bad.reasonCode]).toEqual([2, 0x99])
  c.send({ cmd: 'publish', topic: 'pf/good', payload: Buffer.from('grüße'), qos: 1, messageId: 3, properties: { payloadFormatIndicator: true } })
  expect((await c.next('puback')).reasonCode ?? 0).toBe(0)
  const m = await c.next('publish')
  expect([m.topic, m.payload.toString(), m.properties?.payloadFormatIndicator]).toEqual(['pf/good', 'grüße', true])
  await c.ping()
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('a subscription the acl_file refuses (a filter under a deny rule) gets SUBACK 0x80 in v5 too, as in 3.1.1', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  await writeFile(`${dir}/acl`, 'topic readwrite #\ntopic deny test/nosubscribe\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${dir}/acl\n`)
  onTestFinished(() => b.close())
  const c = await raw5(b.port())
  onTestFinished(() => c.end())
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'test/nosubscribe', qos: 2 }, { topic: 'test/other', qos: 2 }] })
  expect((await c.next('suback')).granted).toEqual([0x80, 2])
})

test('max_inflight_messages 0: a v5 client\'s Receive Maximum still bounds the QoS 1 messages sent to it unacknowledged [MQTT-3.3.4-7]', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n')
  onTestFinished(() => b.close())
  const c = await raw5(b.port(), { clientId: 'rm2', properties: { receiveMaximum: 2 } })
  onTestFinished(() => c.end())
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rm/#', qos: 1 }] })
  await c.next('suback')
  const pub = await raw5(b.port(), { clientId: 'pub' })
  onTestFinished(() => pub.end())
  for (let i = 0; i < 5; i++) pub.send({ cmd: 'publish', topic: 'rm/t', payload: Buffer.from(String(i)), qos: 1, messageId: 10 + i })
  for (let i = 0; i < 5; i++) await pub.next('puback')
  const first = [await c.next('publish'), await c.next('publish')]
  // a round trip through the broker after all five were routed: still only two sent
  await pub.ping()
  await c.ping()
  expect(first.map(p => p.payload.toString())).toEqual(['0', '1'])
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
  c.send({ cmd: 'puback', messageId: first[0]!.messageId })
  expect((await c.next('publish')).payload.toString()).toBe('2')
  await c.ping()
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
})

test('a clean start forgets the QoS 2 messages the previous connection left unreleased: a new PUBLISH reusing the packet id is routed (v5 and 3.1.1, as mosquitto 2.0.11); a resumed session still takes a resend as one', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const sub = await raw5(b.port(), { clientId: 'q2sub' })
  onTestFinished(() => sub.end())
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q2/#', qos: 0 }] })
  await sub.next('suback')
  for (const version of [5, 4] as const) {
    const connect = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `q2pub${version}`, keepalive: 60 }
    const first = await RawClient.connect(b.port(), '127.0.0.1', version)
    first.send({ ...connect, clean: false, ...(version === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) })
    await first.next('connack')
    first.send({ cmd: 'publish', topic: `q2/${version}/first`, payload: Buffer.from('a'), qos: 2, messageId: 7 })
    await first.next('pubrec')
    first.end()
    await first.closed
    // the session resumed: the same packet id is a resend, not routed again
    const resumed = await RawClient.connect(b.port(), '127.0.0.1', version)
    resumed.send({ ...connect, clean: false, ...(version === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) })
    await resumed.next('connack')
    resumed.send({ cmd: 'publish', topic: `q2/${version}/first`, payload: Buffer.from('a'), qos: 2, messageId: 7, dup: true })
    await resumed.next('pubrec')
    resumed.end()
    await resumed.closed
    const fresh = await RawClient.connect(b.port(), '127.0.0.1', version)
    onTestFinished(() => fresh.end())
    fresh.send({ ...connect, clean: true })
    await fresh.next('connack')
    fresh.send({ cmd: 'publish', topic: `q2/${version}/second`, payload: Buffer.from('b'), qos: 2, messageId: 7 })
    await fresh.next('pubrec')
    fresh.send({ cmd: 'pubrel', messageId: 7 })
    await fresh.next('pubcomp')
  }
  await sub.ping()
  expect(sub.packets.filter(p => p.cmd === 'publish').map(p => p.topic)).toEqual(['q2/5/first', 'q2/5/second', 'q2/4/first', 'q2/4/second'])
})

test('keep alive timeout: a v5 client gets DISCONNECT 0x8D before the close (1.5 x its keep alive), a 3.1.1 client a plain close', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const v5 = await raw5(b.port(), { clientId: 'sleepy5', keepalive: 1 })
  const t0 = Date.now()
  const d = await v5.next('disconnect', 5000)
  expect(d.reasonCode).toBe(0x8d)
  expect(Date.now() - t0).toBeGreaterThanOrEqual(1400)
  await v5.closed
  expect(v5.packets).toEqual([])
  const v4 = await RawClient.connect(b.port())
  expect((await v4.connectMqtt({ clientId: 'sleepy4', keepalive: 1 })).returnCode).toBe(0)
  await v4.closed
  expect(v4.packets).toEqual([])
})

test('PUBACK/PUBREC 0x97 when only sessions away with full queues would take the message; 0x10 when nobody would; 0x00 otherwise', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 2\n')
  onTestFinished(() => b.close())
  const away = await connect5(b.url(), { clientId: 'away5', clean: false, properties: { sessionExpiryInterval: 300 } })
  await away.client.subscribeAsync('q/#', { qos: 1 })
  const gone = new Promise<void>(resolve => b.broker.aedes.once('clientDisconnect', () => resolve()))
  await away.client.endAsync()
  await gone
  const pub = await raw5(b.port(), { clientId: 'pub5' })
  onTestFinished(() => pub.end())
  /** Publishes, and waits until the broker has routed it (its offline queue written) before the next one. */
  const publish = async (id: number, qos: 1 | 2, topic: string): Promise<number> => {
    const routed = new Promise<void>(resolve => {
      const on = (p: AedesPublishPacket): void => { if (p.topic === topic && p.payload.toString() === `m${id}`) { b.broker.aedes.off('publish', on); resolve() } }
      b.broker.aedes.on('publish', on)
    })
    pub.send({ cmd: 'publish', topic, payload: `m${id}`, qos, messageId: id })
    const ack = await pub.next(qos === 1 ? 'puback' : 'pubrec')
    if (qos === 2) { pub.send({ cmd: 'pubrel', messageId: id }); await pub.next('pubcomp') }
    await routed
    return ack.reasonCode as number
  }
  expect([await publish(1, 1, 'q/a'), await publish(2, 1, 'q/a'), await publish(3, 1, 'q/a'), await publish(4, 2, 'q/a'), await publish(5, 1, 'nobody/here')])
    .toEqual([0x00, 0x00, 0x97, 0x97, 0x10])
  // the session comes back with the two that fitted
  const back = mqtt.connect(b.url(), { protocolVersion: 5, reconnectPeriod: 0, clientId: 'away5', clean: false, properties: { sessionExpiryInterval: 300 } })
  onTestFinished(() => back.endAsync(true))
  const got: string[] = []
  await new Promise<void>(resolve => back.on('message', (_t, p) => { got.push(p.toString()); if (got.length === 2) resolve() }))
  expect(got).toEqual(['m1', 'm2'])
})
