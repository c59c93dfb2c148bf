/**
 * Shared subscriptions (`$share/GROUP/FILTER`), as mosquitto 2.0 has them, for v5 and 3.1.1 clients: one member
 * per group per message, round robin; groups and normal subscriptions each get their copy; UNSUBSCRIBE and a
 * disconnect leave the group, and a member that leaves takes no message with it; invalid forms; no retained
 * messages on a shared subscribe; ACL per receiving member; persistent members queued for, also across a
 * LevelDB restart; refused in cluster mode. Integration tests run the built daemon where a process is spawned.
 */
import { test, expect, type OnTestFinishedHandler } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import mqtt, { type IConnackPacket } from 'mqtt'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { connect, collect, barrier, subackCodes, until, eventually, type Received } from '../helpers/mqtt.js'
import { spawnMidge, spawnMosquitto, freePort, writeConf, mosquittoSub, messageLines, run } from '../helpers/processes.js'
import { startRedis } from '../helpers/redis.js'
import { hashToken } from '../../src/admin/auth.js'

const payloads = (got: Received[]): string[] => got.map(g => g.payload)
const range = (n: number, from = 0, step = 1): string[] => Array.from({ length: n }, (_, i) => String(from + i * step))

test('100 QoS 1 messages over 3 members (3.1.1): each exactly once, round robin in join order; a second group (v5) and a normal subscriber each get all 100', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const members = []
  for (const id of ['a1', 'a2', 'a3']) {
    const c = await connect(b.url(), { clientId: id }, onTestFinished)
    const got = collect(c)
    expect((await c.subscribeAsync('$share/ga/rr/#', { qos: 1 })).map(g => g.qos)).toEqual([1])
    members.push(got)
  }
  const v5 = []
  for (const id of ['b1', 'b2']) {
    const c = await connect(b.url(), { clientId: id, protocolVersion: 5 }, onTestFinished)
    const got = collect(c)
    await c.subscribeAsync('$share/gb/rr/+', { qos: 2 })
    v5.push(got)
  }
  const plain = await connect(b.url(), { clientId: 'plain' }, onTestFinished)
  const all = collect(plain)
  await plain.subscribeAsync('rr/x', { qos: 1 })
  expect(b.broker.shared.count()).toBe(5)

  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  const sentBefore = b.broker.stats.publishSent
  for (let i = 0; i < 100; i++) await pub.publishAsync('rr/x', String(i), { qos: 1 })
  await all.take(100)
  await Promise.all([members[0]!.take(34), members[1]!.take(33), members[2]!.take(33), v5[0]!.take(50), v5[1]!.take(50)])
  await barrier(pub)
  expect(members.map(m => payloads(m.messages))).toEqual([range(34, 0, 3), range(33, 1, 3), range(33, 2, 3)])
  expect(v5.map(m => payloads(m.messages))).toEqual([range(50, 0, 2), range(50, 1, 2)])
  expect(payloads(all.messages)).toEqual(range(100))
  // each copy at min(publish QoS, subscription QoS); never retained
  expect(new Set([...members, ...v5].flatMap(m => m.messages.map(g => `${g.qos} ${String(g.retain)}`)))).toEqual(new Set(['1 false']))
  const snap = await b.broker.stats.snapshot(b.broker.aedes)
  expect(snap.sharedSubscriptions).toBe(5)
  // publish/messages/sent: one per delivery, as for any subscription (100 to the normal subscriber, 100 per group)
  expect(b.broker.stats.publishSent - sentBefore).toBe(300)
})

test('a client with a normal subscription and a shared one on the same topic gets a copy for each', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'both', protocolVersion: 5 }, onTestFinished)
  const got = collect(c)
  await c.subscribeAsync({ 'dual/t': { qos: 1 }, '$share/g/dual/t': { qos: 1 } })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('dual/t', 'm', { qos: 1 })
  await got.take(2)
  await barrier(pub)
  expect(payloads(got.messages)).toEqual(['m', 'm'])
})

test('v5: the CONNACK offers shared subscriptions (no property, as from mosquitto: available); invalid forms and No Local get DISCONNECT 0x81/0x82 without SUBACK; 3.1.1 gets SUBACK 0x80', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const ok = await connect(b.url(), { clientId: 'ok5', protocolVersion: 5 }, onTestFinished)
  const connack = await new Promise<IConnackPacket>(resolve => {
    const c = mqtt.connect(b.url(), { clientId: 'probe', protocolVersion: 5, reconnectPeriod: 0 })
    c.once('connect', p => { c.end(true); resolve(p) })
  })
  expect(connack.properties).toEqual({ receiveMaximum: 20, topicAliasMaximum: 10 })
  expect(await subackCodes(ok, { '$share/g/t': { qos: 2 } })).toEqual([2])

  const cases: Array<[string, boolean, number]> = [
    ['$share/g', false, 0x82], ['$share//f', false, 0x82], ['$share/g/', false, 0x82], ['$share', false, 0x82],
    ['$share/g+/f', false, 0x81], ['$share/#/f', false, 0x81], ['$share/g/f', true, 0x82]
  ]
  for (const [topic, nl, code] of cases) {
    const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
    onTestFinished(() => c.end())
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'bad5', keepalive: 60 })
    // in the CONNECT's read: the DISCONNECT still comes after the CONNACK
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1, nl }, { topic: 'fine', qos: 1 }] })
    expect((await c.next()).cmd).toBe('connack')
    const d = await c.next()
    expect([topic, d.cmd, d.reasonCode]).toEqual([topic, 'disconnect', code])
    await c.closed
    expect(c.packets).toEqual([])
  }
  const v4 = await RawClient.connect(b.port())
  onTestFinished(() => v4.end())
  await v4.connectMqtt({ clientId: 'v4' })
  const filters = ['$share/g', '$share//f', '$share/g+/f', '$share/g/', '$share', '$MIDGE/share/g/f', '$share/g/ok']
  v4.send({ cmd: 'subscribe', messageId: 1, subscriptions: filters.map(topic => ({ topic, qos: 1 })) })
  expect((await v4.next('suback')).granted).toEqual([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1])
})

test('retained messages are not sent on a shared subscribe; a normal subscribe beside it gets them', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true })
  const c = await connect(b.url(), { clientId: 's', protocolVersion: 5 }, onTestFinished)
  const got = collect(c)
  await c.subscribeAsync('$share/g/ret/#', { qos: 1 })
  await barrier(c)
  expect(got.messages).toEqual([])
  await c.subscribeAsync('ret/#', { qos: 1 })
  await got.take(1)
  expect(got.messages.map(g => [g.payload, g.retain])).toEqual([['kept', true]])
})

test('UNSUBSCRIBE and a disconnect leave the group: the members left get every message', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const a = await connect(b.url(), { clientId: 'ua', protocolVersion: 5 }, onTestFinished)
  const c = await connect(b.url(), { clientId: 'uc' }, onTestFinished)
  const d = await connect(b.url(), { clientId: 'ud' }, onTestFinished)
  const gotD = collect(d)
  for (const x of [a, c, d]) await x.subscribeAsync('$share/g/u/t', { qos: 1 })
  expect(b.broker.shared.count()).toBe(3)
  await a.unsubscribeAsync('$share/g/u/t')
  await c.endAsync()
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 10; i++) await pub.publishAsync('u/t', String(i), { qos: 1 })
  await gotD.take(10)
  expect(payloads(gotD.messages)).toEqual(range(10))
  expect(b.broker.shared.count()).toBe(1)
})

test('a member that leaves takes no message with it: its unacknowledged QoS 1 messages go to another member; a QoS 2 one already sent does not [MQTT-4.8.2-5]', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  // a member that reads but never acknowledges
  const mute = await RawClient.connect(b.port())
  onTestFinished(() => mute.end())
  await mute.connectMqtt({ clientId: 'mute' })
  mute.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/l/#', qos: 2 }] })
  expect((await mute.next('suback')).granted).toEqual([2])
  const keen = await connect(b.url(), { clientId: 'keen' }, onTestFinished)
  const got = collect(keen)
  await keen.subscribeAsync('$share/g/l/#', { qos: 2 })

  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 10; i++) await pub.publishAsync('l/one', `one-${i}`, { qos: 1 })
  for (let i = 0; i < 4; i++) await pub.publishAsync('l/two', `two-${i}`, { qos: 2 })
  await got.take(7)
  await mute.ping()
  const toMute = mute.packets.filter(p => p.cmd === 'publish').map(p => String(p.payload))
  expect(toMute).toEqual(['one-0', 'one-2', 'one-4', 'one-6', 'one-8', 'two-0', 'two-2'])
  mute.end()
  await got.take(12)
  await barrier(pub)
  const sorted = payloads(got.messages).sort()
  expect(sorted).toEqual([...range(10).map(i => `one-${i}`), 'two-1', 'two-3'].sort())
})

test('a persistent member offline is queued for (QoS 1, as mosquitto); a QoS 0 message goes to a connected member instead of being lost', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const away = await connect(b.url(), { clientId: 'away', clean: false }, onTestFinished)
  await away.subscribeAsync('$share/g/p/#', { qos: 1 })
  await away.endAsync()
  const here = await connect(b.url(), { clientId: 'here' }, onTestFinished)
  const gotHere = collect(here)
  await here.subscribeAsync('$share/g/p/#', { qos: 1 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 10; i++) await pub.publishAsync('p/x', `q1-${i}`, { qos: 1 })
  for (let i = 0; i < 6; i++) await pub.publishAsync('p/x', `q0-${i}`, { qos: 0 })
  await gotHere.take(11)
  await barrier(pub)
  expect(payloads(gotHere.messages)).toEqual([...[1, 3, 5, 7, 9].map(i => `q1-${i}`), ...range(6).map(i => `q0-${i}`)])
  const got: Received[] = []
  const back = await connect(b.url(), { clientId: 'away', clean: false, got }, onTestFinished)
  expect(back.sessionPresent).toBe(true)
  await until(back, got, g => g.length >= 5, 'the queued messages')
  await barrier(back)
  expect(payloads(got)).toEqual([0, 2, 4, 6, 8].map(i => `q1-${i}`))
})

test('the read ACL is checked for the member that receives: a message goes to a member allowed to read it', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const acl = join(dir, 'acl')
  writeFileSync(acl, 'topic write s/#\npattern read s/%c\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${acl}\n`)
  onTestFinished(() => b.close())
  const a = await connect(b.url(), { clientId: 'acl-a' }, onTestFinished)
  const gotA = collect(a)
  await a.subscribeAsync('$share/g/s/+', { qos: 1 })
  const c = await connect(b.url(), { clientId: 'acl-b' }, onTestFinished)
  const gotB = collect(c)
  await c.subscribeAsync('$share/g/s/+', { qos: 1 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 6; i++) await pub.publishAsync('s/acl-b', `b${i}`, { qos: 1 })
  for (let i = 0; i < 3; i++) await pub.publishAsync('s/acl-a', `a${i}`, { qos: 1 })
  await gotB.take(6)
  await gotA.take(3)
  await barrier(pub)
  expect([payloads(gotA.messages), payloads(gotB.messages)]).toEqual([['a0', 'a1', 'a2'], range(6).map(i => `b${i}`)])
})

test('mosquitto_sub with $share: two of them split 10 messages 5 and 5', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const port = String(b.port())
  // one after the other: the round robin starts with the member that joined first
  const subs: Array<ReturnType<typeof mosquittoSub>> = []
  for (const id of ['ms1', 'ms2']) {
    const s = mosquittoSub(['-p', port, '-i', id, '-q', '1', '-t', '$share/m/ms/#'], 5)
    await s.ready
    subs.push(s)
  }
  const pub = await run('mosquitto_pub', ['-p', port, '-q', '1', '-t', 'ms/t', '-l'], { input: range(10).join('\n') + '\n' })
  expect(pub.code).toBe(0)
  const outs = await Promise.all(subs.map(s => s.done))
  expect(outs.map(o => messageLines(o.stdout))).toEqual([range(5, 0, 2), range(5, 1, 2)])
})

test('LevelDB: a persistent member\'s shared subscription survives a restart; messages queue for it while it is away', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/data\n')
  let m = await spawnMidge(conf, dir)
  onTestFinished(() => m.stop())
  const p = await connect(m.url(), { clientId: 'keeper', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } })
  expect(await subackCodes(p, { '$share/g/k/#': { qos: 1 } })).toEqual([1])
  await p.endAsync()
  await m.stop()

  m = await spawnMidge(conf, dir)
  await m.logged(/Restored the shared subscriptions of 1 persistent session/)
  const o = await connect(m.url(), { clientId: 'other' }, onTestFinished)
  const gotO = collect(o)
  await o.subscribeAsync('$share/g/k/#', { qos: 1 })
  const pub = await connect(m.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 6; i++) await pub.publishAsync('k/x', String(i), { qos: 1 })
  await gotO.take(3)
  const got: Received[] = []
  const back = await connect(m.url(), { clientId: 'keeper', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 }, got }, onTestFinished)
  expect(back.sessionPresent).toBe(true)
  // the restored subscription routes live messages too: the next one is its turn
  await pub.publishAsync('k/x', '6', { qos: 1 })
  await until(back, got, g => g.length >= 4, 'the queued messages and the live one')
  await barrier(pub)
  expect([payloads(got), payloads(gotO.messages)]).toEqual([['0', '2', '4', '6'], ['1', '3', '5']])
}, 60_000)

test('cluster mode refuses shared subscriptions: v5 SUBACK 0x9E and Shared Subscription Available 0, 3.1.1 SUBACK 0x80', async ({ onTestFinished }) => {
  const redis = await startRedis()
  onTestFinished(() => redis.stop())
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const m = await spawnMidge(await writeConf(dir, `listener 0 127.0.0.1\nallow_anonymous true\ncluster_redis ${redis.url}\nnode_id n1\n`), dir)
  onTestFinished(() => m.stop())
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    const c = mqtt.connect(m.url(), { clientId: 'c5', protocolVersion: 5, reconnectPeriod: 0 })
    c.once('error', reject)
    c.once('connect', p => { resolve(p); onTestFinished(() => c.endAsync(true)) })
  })
  expect(connack.properties?.sharedSubscriptionAvailable).toBe(false)
  const v5 = await connect(m.url(), { clientId: 's5', protocolVersion: 5 }, onTestFinished)
  expect(await subackCodes(v5, { '$share/g/t': { qos: 1 }, t: { qos: 1 } })).toEqual([0x9e, 1])
  const v4 = await connect(m.url(), { clientId: 's4' }, onTestFinished)
  expect(await subackCodes(v4, { '$share/g/t': { qos: 1 }, t: { qos: 1 } })).toEqual([0x80, 1])
}, 60_000)

test('the admin API lists a shared subscription as the client wrote it; /metrics and $SYS shared_subscriptions/count count it', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  writeFileSync(join(dir, 'tokens'), `ro:read:${hashToken('midge_readonly')}\n`)
  const b = await startTestBroker(`admin_token_file ${dir}/tokens\nsys_interval 1\nlistener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol websockets\nadmin_enabled true\n`)
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'adm', protocolVersion: 5 }, onTestFinished)
  await c.subscribeAsync({ '$share/grp/a/#': { qos: 1 }, 'a/b': { qos: 0 } })
  const r = await fetch(`http://127.0.0.1:${b.port('ws')}/api/v1/clients`, { headers: { authorization: 'Bearer midge_readonly' } })
  const row = ((await r.json()) as { clients: Array<{ subscriptions: unknown }> }).clients[0]!
  expect(row.subscriptions).toEqual([{ topic: '$share/grp/a/#', qos: 1 }, { topic: 'a/b', qos: 0 }])
  const metrics = await (await fetch(`http://127.0.0.1:${b.port('ws')}/metrics`)).text()
  expect(metrics).toMatch(/^midge_shared_subscriptions 1$/m)
  // a shared subscription to $SYS: one of the two members gets each value
  const sys = await connect(b.url(), { clientId: 'sys' }, onTestFinished)
  const other = await connect(b.url(), { clientId: 'sys2' }, onTestFinished)
  const got: Received[] = []
  for (const x of [sys, other]) {
    x.on('message', (topic, payload) => { got.push({ topic, payload: payload.toString(), qos: 0, retain: false, dup: false }) })
    await x.subscribeAsync('$share/s/$SYS/broker/shared_subscriptions/count', { qos: 0 })
  }
  await until(sys, got, g => g.some(m => m.payload === '3'), 'shared_subscriptions/count 3')
})

test('mount_point: a shared subscription takes the listener\'s prefix on its filter part', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmount_point site1/\nlistener 0 127.0.0.1\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  const mounted = b.broker.bound[0]!.address.port
  const plain = b.broker.bound[1]!.address.port
  const m1 = await connect(`mqtt://127.0.0.1:${mounted}`, { clientId: 'mp1' }, onTestFinished)
  const m2 = await connect(`mqtt://127.0.0.1:${mounted}`, { clientId: 'mp2', protocolVersion: 5 }, onTestFinished)
  const got = [collect(m1), collect(m2)]
  await m1.subscribeAsync('$share/g/t/#', { qos: 1 })
  await m2.subscribeAsync('$share/g/t/#', { qos: 1 })
  const pub = await connect(`mqtt://127.0.0.1:${plain}`, { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 4; i++) await pub.publishAsync('site1/t/x', String(i), { qos: 1 })
  await pub.publishAsync('t/x', 'outside', { qos: 1 })
  await Promise.all(got.map(g => g.take(2)))
  await barrier(pub)
  expect(got.map(g => g.messages.map(x => `${x.topic} ${x.payload}`))).toEqual([['t/x 0', 't/x 2'], ['t/x 1', 't/x 3']])
})

test('LevelDB: acknowledged QoS 1 messages for an offline persistent member survive SIGKILL (the journal covers shared subscriptions)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/data\n')
  let m = await spawnMidge(conf, dir)
  onTestFinished(() => m.stop())
  const p = await connect(m.url(), { clientId: 'keeper', clean: false })
  await p.subscribeAsync('$share/g/j/#', { qos: 1 })
  await p.endAsync()
  const pub = await connect(m.url(), { clientId: 'pub' })
  const n = 300
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('j/x', String(i), { qos: 1 })))
  await m.kill('SIGKILL')
  pub.end(true)
  m = await spawnMidge(conf, dir)
  const got: Received[] = []
  const back = await connect(m.url(), { clientId: 'keeper', clean: false, got }, onTestFinished)
  await until(back, got, g => new Set(payloads(g)).size >= n, `${n} messages`)
  expect([...new Set(payloads(got))].sort((a, b) => Number(a) - Number(b))).toEqual(range(n))
}, 60_000)

test('a stuck member is passed over; a leaving member\'s messages still waiting for its window (max_inflight_messages 2) go to another member, QoS 2 included', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 2\n')
  onTestFinished(() => b.close())
  const mute = await RawClient.connect(b.port())
  onTestFinished(() => mute.end())
  await mute.connectMqtt({ clientId: 'mute' })
  mute.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/w/#', qos: 2 }] })
  await mute.next('suback')
  const keen = await connect(b.url(), { clientId: 'keen' }, onTestFinished)
  const got = collect(keen)
  await keen.subscribeAsync('$share/g/w/#', { qos: 2 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  // 4 waits for a slot of mute's window, which holds its publisher until mute counts as stuck (after a second);
  // from then on mute is passed over while keen can take the messages (6, 7)
  for (let i = 0; i < 8; i++) await pub.publishAsync('w/two', String(i), { qos: 2 })
  await got.take(5)
  await mute.ping()
  expect(mute.packets.filter(p => p.cmd === 'publish').map(p => String(p.payload))).toEqual(['0', '2'])
  mute.end()
  await got.take(6)
  await barrier(pub)
  expect(payloads(got.messages)).toEqual(['1', '3', '5', '6', '7', '4'])
})

test('a persistent member whose session ends (clean session on return, v5 session expiry) leaves its group', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const old = await connect(b.url(), { clientId: 'old', clean: false }, onTestFinished)
  await old.subscribeAsync('$share/g/e/#', { qos: 1 })
  await old.endAsync()
  const brief = await connect(b.url(), { clientId: 'brief', protocolVersion: 5, properties: { sessionExpiryInterval: 1 } }, onTestFinished)
  await brief.subscribeAsync('$share/g/e/#', { qos: 1 })
  await brief.endAsync()
  const stay = await connect(b.url(), { clientId: 'stay' }, onTestFinished)
  const got = collect(stay)
  await stay.subscribeAsync('$share/g/e/#', { qos: 1 })
  expect(b.broker.shared.count()).toBe(3)
  // clean session: the old session and its membership end
  const fresh = await connect(b.url(), { clientId: 'old', clean: true }, onTestFinished)
  expect(fresh.sessionPresent).toBe(false)
  await eventually(() => b.broker.shared.count() === 2, 5000, 'the clean session leaving its group')
  // the v5 session expires one second after it ended
  await eventually(() => b.broker.shared.count() === 1, 5000, 'the expired session leaving its group')
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 4; i++) await pub.publishAsync('e/x', String(i), { qos: 1 })
  await got.take(4)
  expect(payloads(got.messages)).toEqual(range(4))
})

/** Five clients, a normal subscriber and two groups with one client in both; three publishes: who got what. */
async function twoGroups (url: string, onTestFinished: (fn: OnTestFinishedHandler) => void): Promise<string[][]> {
  const plan: Array<[string, string[]]> = [
    ['c1', ['tg/#']], ['c2', ['$share/one/tg/t']], ['c3', ['$share/one/tg/t', '$share/two/tg/t']],
    ['c4', ['$share/two/tg/t']], ['c5', ['$share/one/tg/t']]
  ]
  const got = []
  for (const [id, filters] of plan) {
    const c = await connect(url, { clientId: id, protocolVersion: 5 }, onTestFinished)
    got.push(collect(c))
    for (const f of filters) await c.subscribeAsync(f, { qos: 1 })
  }
  const pub = await connect(url, { clientId: 'tg-pub', protocolVersion: 5 }, onTestFinished)
  for (let i = 1; i <= 3; i++) await pub.publishAsync('tg/t', String(i), { qos: 1 })
  await Promise.all([got[0]!.take(3), got[1]!.take(1), got[2]!.take(3), got[3]!.take(1), got[4]!.take(1)])
  await barrier(pub)
  return got.map(g => payloads(g.messages))
}

test('two groups on one filter, a client in both: the same copies as from mosquitto 2.0.11', async ({ onTestFinished }) => {
  const expected = [['1', '2', '3'], ['1'], ['1', '2', '3'], ['2'], ['3']]
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const fromMidge = await twoGroups(b.url(), onTestFinished)
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n`)
  const mosq = await spawnMosquitto(conf)
  onTestFinished(() => mosq.stop())
  const fromMosquitto = await twoGroups(`mqtt://127.0.0.1:${port}`, onTestFinished)
  expect(fromMosquitto).toEqual(expected)
  expect(fromMidge).toEqual(expected)
})

test('v5 subscription options on a shared subscription: the Subscription Identifier is sent, Retain As Published keeps the flag of a live retained message', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await connect(b.url(), { clientId: 'opts', protocolVersion: 5 }, onTestFinished)
  const seen: Array<{ payload: string, retain: boolean, si: unknown }> = []
  c.on('message', (_t, payload, p) => { seen.push({ payload: payload.toString(), retain: p.retain, si: p.properties?.subscriptionIdentifier }) })
  const two = new Promise<void>(resolve => { c.on('message', () => { if (seen.length >= 2) resolve() }) })
  await c.subscribeAsync({ '$share/g/o/a': { qos: 1, rap: true } }, { properties: { subscriptionIdentifier: 7 } })
  await c.subscribeAsync({ '$share/g/o/b': { qos: 1 } })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('o/a', 'a', { qos: 1, retain: true })
  await pub.publishAsync('o/b', 'b', { qos: 1, retain: true })
  await two
  expect(seen).toEqual([{ payload: 'a', retain: true, si: 7 }, { payload: 'b', retain: false, si: undefined }])
})

test('a persistent member whose session ends (clean session on return) takes no message with it: what was queued for it goes to another member', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const away = await connect(b.url(), { clientId: 'away', clean: false }, onTestFinished)
  await away.subscribeAsync('$share/g/q/#', { qos: 2 })
  await away.endAsync()
  const stay = await connect(b.url(), { clientId: 'stay' }, onTestFinished)
  const got = collect(stay)
  await stay.subscribeAsync('$share/g/q/#', { qos: 2 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 6; i++) await pub.publishAsync('q/one', String(i), { qos: 1 })
  for (const p of ['x', 'y']) await pub.publishAsync('q/two', p, { qos: 2 })
  await got.take(4)
  const back = await connect(b.url(), { clientId: 'away', clean: true }, onTestFinished)
  expect(back.sessionPresent).toBe(false)
  await got.take(8)
  await barrier(pub)
  expect(payloads(got.messages)).toEqual(['1', '3', '5', 'y', '0', '2', '4', 'x'])
})

test('v5: a member whose session expires while away: what was queued for it goes to another member', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const brief = await connect(b.url(), { clientId: 'brief', protocolVersion: 5, properties: { sessionExpiryInterval: 1 } }, onTestFinished)
  await brief.subscribeAsync('$share/g/v/#', { qos: 1 })
  await brief.endAsync()
  const stay = await connect(b.url(), { clientId: 'stay', protocolVersion: 5 }, onTestFinished)
  const got = collect(stay)
  await stay.subscribeAsync('$share/g/v/#', { qos: 1 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 6; i++) await pub.publishAsync('v/x', String(i), { qos: 1 })
  await got.take(3)
  // the session expires one second after it ended
  await got.take(6, 5000)
  await barrier(pub)
  expect(payloads(got.messages)).toEqual(['1', '3', '5', '0', '2', '4'])
  expect(b.broker.shared.count()).toBe(1)
})

test('v5: a persistent member that ends its session at DISCONNECT (Session Expiry 0): its unacknowledged messages go to another member', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const mute = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => mute.end())
  mute.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'mute5', keepalive: 60, properties: { sessionExpiryInterval: 3600 } })
  await mute.next('connack')
  mute.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/d/#', qos: 1 }] })
  await mute.next('suback')
  const keen = await connect(b.url(), { clientId: 'keen5', protocolVersion: 5 }, onTestFinished)
  const got = collect(keen)
  await keen.subscribeAsync('$share/g/d/#', { qos: 1 })
  const pub = await connect(b.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 6; i++) await pub.publishAsync('d/x', String(i), { qos: 1 })
  await got.take(3)
  await mute.ping()
  expect(mute.packets.filter(p => p.cmd === 'publish').map(p => String(p.payload))).toEqual(['0', '2', '4'])
  mute.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } })
  await mute.closed
  await got.take(6)
  await barrier(pub)
  expect(payloads(got.messages)).toEqual(['1', '3', '5', '0', '2', '4'])
})
