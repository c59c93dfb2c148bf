/**
 * Bridges in a cluster: two Midge nodes on one Redis, Debian's mosquitto as the remote. The bridge runs on the node
 * that holds its lease; its queue is in Redis; the other node takes it over when the holder is killed (SIGKILL) or
 * stops (SIGTERM), and sends what the holder had queued.
 */
import { test, expect } from 'vitest'
import { userInfo } from 'node:os'
import { connect, until, type Received } from '../helpers/mqtt.js'
import { tempDir } from '../helpers/start-broker.js'
import { startRedis } from '../helpers/redis.js'
import { freePort, runMidge, spawnMidge, spawnMosquitto, writeConf, type Daemon } from '../helpers/processes.js'
import { startRemote } from '../helpers/bridge.js'

/** src/cluster/journal.ts LEASE_MS and src/cluster/lease.ts RENEW_MS. */
const LEASE_MS = 5_000
const RENEW_MS = 1_000
/** Start-up of the bridge on the new holder (queue read, subscription) on a loaded 2-core machine, at most. */
const START_SLACK_MS = 3_000
const QUEUED = 200
const HOLDS = /Bridge cloud: this node \(\S+\) holds the bridge's lease and runs it\./

test('one node runs the bridge; the other takes it over with its Redis queue after SIGKILL and after SIGTERM', { timeout: 120_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-cluster-')
  onTestFinished(remove)
  const redis = await startRedis()
  onTestFinished(() => redis.close())
  const port = await freePort()
  const mconf = await writeConf(dir, `user ${userInfo().username}\nlog_dest stderr\npersistence true\npersistence_location ${dir}/\nmax_queued_messages 5000\nlistener ${port} 127.0.0.1\nallow_anonymous true\n`, 'mosquitto.conf')
  let remote: Daemon | undefined = await spawnMosquitto(mconf)
  onTestFinished(async () => { await remote?.stop() })
  const remoteUrl = `mqtt://127.0.0.1:${port}`

  const conf = (node: string): Promise<string> => writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true', `cluster_redis ${redis.url}`, `node_id ${node}`,
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid pi', 'restart_timeout 1',
    'topic load/# out 1', 'topic cmd/# in 1'
  ].join('\n'), `${node}.conf`)
  const nodes: Daemon[] = []
  const start = async (node: string): Promise<Daemon> => {
    const d = await spawnMidge(await conf(node), dir)
    nodes.push(d)
    return d
  }
  onTestFinished(async () => { await Promise.all(nodes.map(n => n.kill('SIGKILL'))) })

  const a = await start('a')
  await a.logged(HOLDS)
  const b = await start('b')
  await a.logged(/Bridge cloud: connected to 127\.0\.0\.1:\d+ as pi/)

  // the watcher's persistent session on the remote keeps what arrives while it is away
  const got: Received[] = []
  let watcher = await connect(remoteUrl, { clientId: 'watcher', clean: false, got })
  await watcher.subscribeAsync('load/#', { qos: 1 })

  // out, published on the node that does not run the bridge: routed to the holder through Redis
  const pubB = await connect(b.url(), { clientId: 'pub-b' })
  for (let i = 0; i < 10; i++) await pubB.publishAsync('load/x', `m${i}`, { qos: 1 })
  await until(watcher, got, g => g.length >= 10, '10 messages through the bridge')
  // in: reaches a subscriber on either node, once
  const subB = await connect(b.url(), { clientId: 'sub-b' })
  const down: Received[] = []
  subB.on('message', (topic, payload) => down.push({ topic, payload: payload.toString(), qos: 0, retain: false, dup: false }))
  await subB.subscribeAsync('cmd/#', { qos: 1 })
  const remotePub = await connect(remoteUrl, { clientId: 'remote-pub' })
  await remotePub.publishAsync('cmd/heat', 'on', { qos: 1 })
  await until(subB, down, d => d.length >= 1, 'the command on node b')
  await remotePub.endAsync()
  await watcher.endAsync()
  // b never ran it: one bridge connection to the remote, not two
  expect(b.output()).not.toMatch(HOLDS)

  // remote down: published on b, queued by a in Redis
  await remote.stop()
  remote = undefined
  await a.logged(/Bridge cloud: connection to 127\.0\.0\.1:\d+ lost/, 10_000)
  await Promise.all(Array.from({ length: QUEUED }, (_, i) => pubB.publishAsync('load/x', `q${i}`, { qos: 1 })))
  const hlen = async (): Promise<number> => Number((await redis.command('HLEN', 'midge:bridge:cloud:queue')).replace(/^:/, '').trim())
  await expect.poll(hlen, { timeout: 10_000, interval: 50 }).toBe(QUEUED)
  const shown = await runMidge(['store', 'bridges', '-c', await conf('a')], dir)
  expect(shown.code).toBe(0)
  expect(shown.output).toMatch(new RegExp(`^Bridge queues \\(Redis\\):\n {2}cloud: ${QUEUED} message\\(s\\), 0 sent and not yet acknowledged; oldest queued \\S+ \\(\\d+ s ago\\) for load/x\n$`))

  // SIGKILL the holder: b takes the lease once it expires, reads the queue and sends it
  const killedAt = Date.now()
  await a.kill('SIGKILL')
  await b.waitFor(HOLDS, LEASE_MS + RENEW_MS + START_SLACK_MS)
  const takeoverMs = Date.now() - killedAt
  await b.logged(new RegExp(`Bridge cloud: ${QUEUED} message\\(s\\) left by the previous holder are queued for the remote\\.`), START_SLACK_MS)
  remote = await spawnMosquitto(mconf)
  got.length = 0
  watcher = await connect(remoteUrl, { clientId: 'watcher', clean: false, got })
  await until(watcher, got, g => new Set(g.map(m => m.payload)).size >= QUEUED, `${QUEUED} queued messages`, 30_000)
  const firsts: string[] = []
  for (const m of got) if (!firsts.includes(m.payload)) firsts.push(m.payload)
  expect(firsts).toEqual(Array.from({ length: QUEUED }, (_, i) => `q${i}`))
  await expect.poll(hlen, { timeout: 10_000, interval: 50 }).toBe(0)

  // SIGTERM: the holder releases the lease and a new node takes it within a renewal
  const c = await start('c')
  await b.logged(/Bridge cloud: connected to 127\.0\.0\.1:\d+ as pi/)
  const stoppedAt = Date.now()
  await b.stop()
  await c.waitFor(HOLDS, RENEW_MS + START_SLACK_MS)
  const handoverMs = Date.now() - stoppedAt
  await c.logged(/Bridge cloud: connected to 127\.0\.0\.1:\d+ as pi/, 15_000)
  const pubC = await connect(c.url(), { clientId: 'pub-c' })
  await pubC.publishAsync('load/x', 'after', { qos: 1 })
  await until(watcher, got, g => g.some(m => m.payload === 'after'), 'a message through the new holder')
  await pubC.endAsync()
  // the node running it keeps the queue in memory too: not dropped under it
  const refused = await runMidge(['store', 'bridges', '-c', await conf('c'), '--drop', 'cloud'], dir)
  expect(refused.code).toBe(2)
  expect(refused.output).toContain('Error: bridge cloud is running on a node of the cluster (midge:bridge:cloud:lease is held): stop that node\'s bridge first.')
  // their node is gone
  pubB.end(true)
  subB.end(true)
  await watcher.endAsync()
  console.log(`bridge lease: taken over ${takeoverMs} ms after SIGKILL, ${handoverMs} ms after SIGTERM; ${got.length - QUEUED - 1} duplicate(s)`)
})

test('the holder stops the bridge when Redis is gone for the lease time; once Redis is back, one node runs it', { timeout: 120_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-cluster-redis-')
  onTestFinished(remove)
  const redis = await startRedis()
  onTestFinished(() => redis.close())
  const remote = await startRemote(onTestFinished)
  const conf = (node: string): Promise<string> => writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true', `cluster_redis ${redis.url}`, `node_id ${node}`,
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid pi', 'restart_timeout 1', 'topic load/# out 1'
  ].join('\n'), `${node}.conf`)
  const a = await spawnMidge(await conf('a'), dir)
  onTestFinished(async () => { await a.kill('SIGKILL') })
  await a.logged(HOLDS)
  const b = await spawnMidge(await conf('b'), dir)
  onTestFinished(async () => { await b.kill('SIGKILL') })

  const stoppedAt = Date.now()
  await redis.stop()
  await a.waitFor(/cluster: bridge cloud: lease not renewed for 4 s; stopping here\./, LEASE_MS + START_SLACK_MS)
  // given up before the lease could have expired for the other nodes (its last renewal was before Redis stopped)
  expect(Date.now() - stoppedAt).toBeLessThan(LEASE_MS)
  await a.logged(/Bridge cloud: stopped on this node \(a-1\); another node takes it over\./)
  expect(b.output()).not.toMatch(HOLDS)

  const [aMark, bMark] = [a.output().length, b.output().length]
  await redis.start()
  await expect.poll(() => HOLDS.test(a.output().slice(aMark)) || HOLDS.test(b.output().slice(bMark)), { timeout: LEASE_MS + RENEW_MS + START_SLACK_MS }).toBe(true)
  // a second renewal round: still exactly one
  await new Promise(resolve => setTimeout(resolve, 2 * RENEW_MS))
  const holders = [a.output().slice(aMark), b.output().slice(bMark)].filter(o => HOLDS.test(o))
  expect(holders).toHaveLength(1)
})
