/**
 * The ACL of the bridge's local identity on incoming messages, the queue bound and its drop count, a bridge over
 * WebSocket (to another Midge), and the Bridges view of the admin API (no credentials in it).
 */
import { test, expect } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { freePort } from '../helpers/processes.js'
import { connect, subscriber } from '../helpers/mqtt.js'
import { startRemote } from '../helpers/bridge.js'
import { hashToken } from '../../src/admin/auth.js'
import { hashPasswordSha512 } from '../../src/auth/password-hash.js'

test('incoming messages pass the ACL as local_username: what it may not write is dropped and counted', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-acl-')
  onTestFinished(remove)
  await writeFile(join(dir, 'acl'), 'user bridge\ntopic write cmd/#\ntopic read #\nuser watcher\ntopic read #\n')
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true', `acl_file ${dir}/acl`,
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid acl-pi', 'restart_timeout 1',
    'local_username bridge', 'topic cmd/# in 1', 'topic cfg/# in 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const sub = await connect(local.url(), { clientId: 'w', username: 'watcher' }, onTestFinished)
  const got: string[] = []
  sub.on('message', t => got.push(t))
  await sub.subscribeAsync('#', { qos: 1 })
  const rpub = await connect(remote.url, { clientId: 'rpub' }, onTestFinished)
  await rpub.publishAsync('cfg/secret', 'no', { qos: 1 })
  await rpub.publishAsync('cmd/light', 'on', { qos: 1 })
  await expect.poll(() => got).toEqual(['cmd/light'])
  expect(local.broker.bridges!.view()[0]).toMatchObject({ received: 2, dropped: 1 })
})

test('local_password is not checked against password_file (as mosquitto 2.0.11): the ACL of local_username applies', async ({ onTestFinished }) => {
  // mosquitto 2.0.11 with password_file, local_username bu and a wrong local_password: the bridge's incoming
  // messages are published as bu (ACL applied); with local_username unknown to the ACL, none are
  const { dir, remove } = await tempDir('midge-bridge-localpw-')
  onTestFinished(remove)
  await writeFile(join(dir, 'passwd'), `bridge:${hashPasswordSha512('right')}\nwatcher:${hashPasswordSha512('w')}\n`)
  await writeFile(join(dir, 'acl'), 'user bridge\ntopic write cmd/#\nuser watcher\ntopic read #\n')
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', `password_file ${dir}/passwd`, `acl_file ${dir}/acl`,
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid pw-pi', 'restart_timeout 1',
    'local_username bridge', 'local_password wrong', 'topic cmd/# in 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const sub = await connect(local.url(), { clientId: 'w', username: 'watcher', password: 'w' }, onTestFinished)
  const got: string[] = []
  sub.on('message', (t, p) => got.push(`${t} ${p.toString()}`))
  await sub.subscribeAsync('#', { qos: 1 })
  const rpub = await connect(remote.url, { clientId: 'rpub' }, onTestFinished)
  await rpub.publishAsync('cmd/light', 'on', { qos: 1 })
  await expect.poll(() => got).toEqual(['cmd/light on'])
  expect(local.broker.bridges!.view()[0]).toMatchObject({ received: 1, dropped: 0 })
})

test('bridge_max_queued_messages: beyond it new messages are dropped and counted; the queued ones arrive', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const port = await freePort()
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid bound-pi', 'restart_timeout 1', 'bridge_max_queued_messages 5', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  for (let i = 0; i < 8; i++) await pub.publishAsync('up/x', String(i), { qos: 1 })
  await pub.publishAsync('up/q0', 'qos0 while down', { qos: 0 })
  await expect.poll(() => local.broker.bridges!.view()[0]).toMatchObject({ queued: 5, dropped: 4 })
  // the remote appears on that port; the five held messages go out, in order, and nothing else
  const remote = await startRemote(onTestFinished, '', '', port)
  await expect.poll(() => local.broker.bridges!.view()[0], { timeout: 15_000 }).toMatchObject({ state: 'connected', queued: 0, sent: 5, dropped: 4 })
  const received = [...remote.daemon.output().matchAll(/Received PUBLISH from bound-pi \(d0, q1, r0, m\d+, '(up\/[^']+)'/g)].map(m => m[1])
  expect(received).toEqual(['up/x', 'up/x', 'up/x', 'up/x', 'up/x'])
})

test('over WebSocket to another Midge, and the admin API\'s Bridges view', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-ws-')
  onTestFinished(remove)
  await writeFile(join(dir, 'tokens'), `ro:read:${hashToken('midge_readonly')}\n`)
  const cloud = await startTestBroker('listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\nlistener 0 127.0.0.1\nallow_anonymous true\n')
  onTestFinished(() => cloud.close())
  const local = await startTestBroker([
    `admin_token_file ${dir}/tokens`,
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'listener 0 127.0.0.1', 'protocol websockets', 'admin_enabled true', 'allow_anonymous true',
    'connection cloud', `address ${cloud.url('ws')}`, 'remote_clientid ws-pi', 'restart_timeout 1',
    'remote_username pi', 'remote_password ws-secret-123', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const w = await subscriber(cloud.url('tcp'), 'w', 'up/#', 1, onTestFinished)
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const pub = await connect(local.url('tcp'), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/ws', 'over websocket', { qos: 1 })
  expect((await w.take(1)).map(m => [m.topic, m.payload])).toEqual([['up/ws', 'over websocket']])

  const r = await fetch(`http://127.0.0.1:${local.port('ws')}/api/v1/bridges`, { headers: { authorization: 'Bearer midge_readonly' } })
  expect(r.status).toBe(200)
  const text = await r.text()
  expect(text).not.toContain('ws-secret-123')
  expect(JSON.parse(text)).toMatchObject({ bridges: [{ name: 'cloud', state: 'connected', remote: `127.0.0.1:${cloud.port('ws')}`, queued: 0 }] })
  await expect.poll(async () => ((await (await fetch(`http://127.0.0.1:${local.port('ws')}/api/v1/bridges`, { headers: { authorization: 'Bearer midge_readonly' } })).json()) as { bridges: Array<{ sent: number }> }).bridges[0]!.sent).toBe(1)
})

test('MQTT 5: a message larger than the remote\'s Maximum Packet Size is dropped and counted, not sent to be refused', async ({ onTestFinished }) => {
  const remote = await startRemote(onTestFinished, 'max_packet_size 200')
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid big-pi', 'bridge_protocol_version mqttv50', 'restart_timeout 1', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const w = await subscriber(remote.url, 'w', 'up/#', 1, onTestFinished)
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/big', Buffer.alloc(500, 'b'), { qos: 1 })
  await pub.publishAsync('up/small', 'fits', { qos: 1 })
  expect((await w.take(1)).map(m => m.topic)).toEqual(['up/small'])
  await expect.poll(() => local.broker.bridges!.view()[0]).toMatchObject({ state: 'connected', dropped: 1, queued: 0, reconnects: 0 })
})

test('incoming messages larger than message_size_limit are dropped and counted, as a client\'s would be', async ({ onTestFinished }) => {
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    'listener 0 127.0.0.1', 'allow_anonymous true', 'message_size_limit 100',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid size-pi', 'restart_timeout 1', 'topic down/# in 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const sub = await subscriber(local.url(), 'sub', 'down/#', 1, onTestFinished)
  const rpub = await connect(remote.url, { clientId: 'rpub' }, onTestFinished)
  // mosquitto forwards once the bridge's subscription is in place: probe until something arrives
  await expect.poll(async () => { await rpub.publishAsync('down/probe', 'p', { qos: 1 }); return sub.messages.length > 0 }, { timeout: 10_000 }).toBe(true)
  const before = local.broker.bridges!.view()[0]!
  await rpub.publishAsync('down/big', Buffer.alloc(200, 'b'), { qos: 1 })
  await rpub.publishAsync('down/last', 'small', { qos: 1 })
  await expect.poll(() => sub.messages.filter(m => m.topic !== 'down/probe').map(m => m.topic)).toEqual(['down/last'])
  expect(local.broker.bridges!.view()[0]).toMatchObject({ received: before.received + 2, dropped: before.dropped + 1 })
})
