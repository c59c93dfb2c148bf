/**
 * What a bridge shows: the remote's CONNACK code in the log with the retry delays, the notification topic here and
 * there, $SYS/broker/bridges/NAME/..., /metrics; and local clients that do not notice a refused bridge.
 */
import { test, expect } from 'vitest'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { connect, collect, subscriber } from '../helpers/mqtt.js'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { freePort, spawnMidge, spawnMosquitto, writeConf } from '../helpers/processes.js'
import { run } from '../helpers/processes.js'

test('wrong credentials: the remote\'s CONNACK code in the log, retries with backoff, local clients unaffected, no password anywhere', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-auth-')
  onTestFinished(remove)
  const pw = join(dir, 'passwd')
  expect((await run('mosquitto_passwd', ['-c', '-b', pw, 'pi', 'right-password'])).code).toBe(0)
  const port = await freePort()
  const remote = await spawnMosquitto(await writeConf(dir, `user ${userInfo().username}\nlog_dest stderr\nlistener ${port} 127.0.0.1\npassword_file ${pw}\n`, 'mosquitto.conf'))
  onTestFinished(() => remote.stop())
  const conf = await writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid pi', 'remote_username pi', 'remote_password wrong-password-xyz',
    'restart_timeout 1 3', 'topic up/# out 1'
  ].join('\n'))
  const midge = await spawnMidge(conf)
  onTestFinished(() => midge.stop())
  // two refusals in a row, each followed by a wait between the base (1 s) and the cap (3 s)
  for (let i = 0; i < 2; i++) {
    await midge.waitFor(/Bridge cloud: 127\.0\.0\.1:\d+ refused the connection: CONNACK 5 \(not authorized\)\./, 10_000)
    const line = await midge.waitFor(/Bridge cloud: reconnecting in (\d+\.\d) s\./, 10_000)
    const s = Number(/in (\d+\.\d) s/.exec(line)![1])
    expect(s).toBeGreaterThanOrEqual(1)
    expect(s).toBeLessThanOrEqual(3)
  }
  // local clients do not notice; the message waits in the queue
  const sub = await subscriber(midge.url(), 'local-sub', 'up/#', 1, onTestFinished)
  const pub = await connect(midge.url(), { clientId: 'local-pub' }, onTestFinished)
  await pub.publishAsync('up/1', 'held', { qos: 1 })
  expect((await sub.take(1)).map(m => [m.topic, m.payload])).toEqual([['up/1', 'held']])
  await midge.stop()
  expect(midge.output()).not.toContain('wrong-password-xyz')
  expect(remote.output()).toMatch(/Client <unknown> disconnected, not authorised\./)
})

test('notifications, $SYS/broker/bridges/NAME/... and /metrics follow the connection', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-sys-')
  onTestFinished(remove)
  const port = await freePort()
  const mconf = await writeConf(dir, `user ${userInfo().username}\nlog_dest stderr\nlistener ${port} 127.0.0.1\nallow_anonymous true\n`, 'mosquitto.conf')
  let remote = await spawnMosquitto(mconf)
  onTestFinished(() => remote.stop())
  const local = await startTestBroker([
    'sys_interval 1', 'listener 0 127.0.0.1', 'allow_anonymous true', 'listener 0 127.0.0.1', 'protocol websockets', 'allow_anonymous true',
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid pi', 'restart_timeout 1', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  const watch = await connect(local.url(), { clientId: 'watch' }, onTestFinished)
  const got = collect(watch)
  await watch.subscribeAsync(['$SYS/broker/connection/pi/state', '$SYS/broker/bridges/cloud/#'], { qos: 1 })
  const last = (topic: string): string | undefined => got.messages.filter(m => m.topic === topic).at(-1)?.payload
  await expect.poll(() => last('$SYS/broker/connection/pi/state'), { timeout: 10_000 }).toBe('1')

  // at the remote: the retained state
  const r = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'remote-watch' }, onTestFinished)
  const rgot = collect(r)
  await r.subscribeAsync('$SYS/broker/connection/pi/state', { qos: 1 })
  expect((await rgot.take(1)).map(m => [m.payload, m.retain])).toEqual([['1', true]])

  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/a', 'x', { qos: 1 })
  await expect.poll(() => [last('$SYS/broker/bridges/cloud/state'), last('$SYS/broker/bridges/cloud/sent'), last('$SYS/broker/bridges/cloud/queued')], { timeout: 10_000 }).toEqual(['1', '1', '0'])
  const metrics = async (): Promise<string> => (await fetch(`${local.url('ws').replace(/^ws/, 'http').replace(/\/mqtt$/, '')}/metrics`)).text()
  const m1 = await metrics()
  expect(m1).toContain('midge_bridge_connected{bridge="cloud"} 1')
  expect(m1).toContain('midge_bridge_sent_total{bridge="cloud"} 1')
  expect(m1).toContain('midge_bridge_queued_messages{bridge="cloud"} 0')

  // the remote goes away: 0 here, the message waits, and both come back
  await remote.stop()
  await expect.poll(() => last('$SYS/broker/connection/pi/state'), { timeout: 10_000 }).toBe('0')
  await pub.publishAsync('up/b', 'y', { qos: 1 })
  await expect.poll(() => [last('$SYS/broker/bridges/cloud/state'), last('$SYS/broker/bridges/cloud/queued')], { timeout: 10_000 }).toEqual(['0', '1'])
  expect(await metrics()).toContain('midge_bridge_queued_messages{bridge="cloud"} 1')
  remote = await spawnMosquitto(mconf)
  await expect.poll(() => [last('$SYS/broker/connection/pi/state'), last('$SYS/broker/bridges/cloud/queued'), last('$SYS/broker/bridges/cloud/reconnects')], { timeout: 15_000 }).toEqual(['1', '0', '1'])
  expect(local.broker.bridges!.view()).toMatchObject([{ name: 'cloud', state: 'connected', queued: 0, sent: 2, reconnects: 1 }])
})
