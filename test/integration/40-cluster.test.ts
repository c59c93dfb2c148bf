/**
 * Several Midge nodes on one Redis: two real `node dist/main.js` processes (run `npm run build` first)
 * and a real Debian `redis-server` started by the test on a free port, without persistence files.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { once, type EventEmitter } from 'node:events'
import type { MqttClient } from 'mqtt'
import { tempDir } from '../helpers/start-broker.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { RawClient } from '../helpers/raw-client.js'
import { connect, collect, until, type Received } from '../helpers/mqtt.js'
import { spawnMidge, runMidge, writeConf, type MidgeProcess } from '../helpers/processes.js'

const conf = (redisUrl: string, node: string, sysInterval = 0): string => `listener 0 127.0.0.1
allow_anonymous true
cluster_redis ${redisUrl}
node_id ${node}
sys_interval ${sysInterval}
max_queued_messages 5000
`

let redis: TestRedis
let dir: string
let removeDir: () => Promise<void>
let a: MidgeProcess
let b: MidgeProcess

async function node (r: TestRedis, id: string, sysInterval = 0): Promise<MidgeProcess> {
  return spawnMidge(await writeConf(dir, conf(r.url, id, sysInterval), `${id}.conf`), dir)
}

beforeAll(async () => {
  redis = await startRedis()
  ;({ dir, remove: removeDir } = await tempDir('midge-cluster-'))
  ;[a, b] = await Promise.all([node(redis, 'a', 1), node(redis, 'b', 1)])
}, 30_000)

afterAll(async () => {
  await Promise.all([a?.kill('SIGKILL'), b?.kill('SIGKILL')])
  await redis?.close()
  await removeDir?.()
})

test('each node logs its node id and takes a broker id <node_id>-<n> from Redis', () => {
  expect(a.output()).toMatch(/"nodeId":"a".*Cluster node a \(broker id a-1\) on Redis redis:\/\/127\.0\.0\.1:\d+\/0\./)
  expect(b.output()).toMatch(/Cluster node b \(broker id b-1\)/)
})

test('each node publishes its own $SYS tree under $SYS/nodes/<node_id>/, seen from every node', async ({ onTestFinished }) => {
  const c = await connect(b.url(), { clientId: 'sys-reader' })
  onTestFinished(() => c.endAsync(true))
  const got = collect(c).messages
  await c.subscribeAsync('$SYS/nodes/+/version', { qos: 0 })
  await until(c, got, g => new Set(g.map(x => x.topic)).size >= 2, 'both nodes\' version')
  const version = got.find(g => g.topic === '$SYS/nodes/a/version')?.payload
  expect(version).toMatch(/^midge version \S+$/)
  expect([...new Set(got.map(g => `${g.topic} ${g.payload}`))].sort()).toEqual([`$SYS/nodes/a/version ${version}`, `$SYS/nodes/b/version ${version}`])
})

test('a client on node A receives what a client on node B publishes, at QoS 0, 1 and 2', async ({ onTestFinished }) => {
  const sub = await connect(a.url(), { clientId: 'sub-x' })
  onTestFinished(() => sub.endAsync(true))
  const got = collect(sub).messages
  expect((await sub.subscribeAsync('x/#', { qos: 2 })).map(g => g.qos)).toEqual([2])
  const pub = await connect(b.url(), { clientId: 'pub-x' })
  onTestFinished(() => pub.endAsync(true))
  for (const qos of [0, 1, 2] as const) await pub.publishAsync(`x/${qos}`, `m${qos}`, { qos })
  await until(sub, got, g => g.length >= 3, 'three messages')
  expect(got).toEqual([
    { topic: 'x/0', payload: 'm0', qos: 0, retain: false, dup: false },
    { topic: 'x/1', payload: 'm1', qos: 1, retain: false, dup: false },
    { topic: 'x/2', payload: 'm2', qos: 2, retain: false, dup: false }
  ])
})

test('a retained message set through A is delivered by B, and cleared through B for A', async ({ onTestFinished }) => {
  const pub = await connect(a.url(), { clientId: 'pub-r' })
  onTestFinished(() => pub.endAsync(true))
  // QoS 2: its PUBREC comes once the message is stored and routed (aedes sends a QoS 1 PUBACK before that, and a
  // subscriber that comes in between gets it live, without the retain flag: seen under load)
  await pub.publishAsync('r/t', 'kept', { qos: 2, retain: true })
  const late = await connect(b.url(), { clientId: 'late-r' })
  onTestFinished(() => late.endAsync(true))
  const got = collect(late).messages
  await late.subscribeAsync('r/#', { qos: 1 })
  await until(late, got, g => g.length >= 1, 'the retained message')
  expect(got).toEqual([{ topic: 'r/t', payload: 'kept', qos: 1, retain: true, dup: false }])
  // an empty retained message through B removes it for a subscriber on A
  const clearer = await connect(b.url(), { clientId: 'clear-r' })
  onTestFinished(() => clearer.endAsync(true))
  await clearer.publishAsync('r/t', '', { qos: 2, retain: true })
  await clearer.publishAsync('r/u', 'other', { qos: 2, retain: true })
  const later = await connect(a.url(), { clientId: 'later-r' })
  onTestFinished(() => later.endAsync(true))
  const got2 = collect(later).messages
  await later.subscribeAsync('r/#', { qos: 1 })
  await until(later, got2, g => g.length >= 1, 'the other retained message')
  expect(got2).toEqual([{ topic: 'r/u', payload: 'other', qos: 1, retain: true, dup: false }])
})

test('a persistent session that leaves A and comes back on B gets its offline queue and subscriptions', async ({ onTestFinished }) => {
  const roamer = 'roamer'
  const s1 = await connect(a.url(), { clientId: roamer, clean: false })
  expect(s1.sessionPresent).toBe(false)
  await s1.subscribeAsync('q/#', { qos: 2 })
  // aedes-persistence-redis adds a subscription to a node's routing trie when its broadcast comes back from Redis:
  // a message that comes back through the same channel after it proves the subscription routes (seen under load:
  // the first two publishes below were not queued when the session went offline at once)
  const probe = new Promise<void>(resolve => s1.on('message', t => { if (t === 'q/probe') resolve() }))
  await s1.publishAsync('q/probe', 'p', { qos: 1 })
  await probe
  await s1.endAsync()
  const pub = await connect(a.url(), { clientId: 'pub-q' })
  onTestFinished(() => pub.endAsync(true))
  // QoS 0 is not queued for an offline session [MQTT-3.1.2-5]; sent first, so that the QoS 2 round trip below
  // (on the same connection and the same Redis connection of node A) is done after node A routed it
  await pub.publishAsync('q/zero', 'z', { qos: 0 })
  for (let i = 0; i < 5; i++) await pub.publishAsync('q/one', `o${i}`, { qos: 1 })
  await pub.publishAsync('q/two', 't', { qos: 2 })
  const got: Received[] = []
  const s2 = await connect(b.url(), { clientId: roamer, clean: false, got })
  onTestFinished(() => s2.endAsync(true))
  expect(s2.sessionPresent).toBe(true)
  await until(s2, got, g => g.length >= 6, 'the queued messages')
  expect(got.map(g => [g.topic, g.payload, g.qos])).toEqual([
    ...[0, 1, 2, 3, 4].map(i => ['q/one', `o${i}`, 1]), ['q/two', 't', 2]
  ])
  // the subscription came back with the session: a new publish on A reaches it on B
  await pub.publishAsync('q/new', 'live', { qos: 1 })
  await until(s2, got, g => g.length >= 7, 'the live message')
  expect(got[6]).toEqual({ topic: 'q/new', payload: 'live', qos: 1, retain: false, dup: false })
})

test('a persistent session gets all of a queue longer than 1000 messages when it comes back (aedes-persistence-redis delivered 1000)', { timeout: 40_000 }, async ({ onTestFinished }) => {
  const hoarder = 'hoarder'
  const s1 = await connect(a.url(), { clientId: hoarder, clean: false })
  await s1.subscribeAsync('h/#', { qos: 1 })
  await s1.endAsync()
  const pub = await connect(b.url(), { clientId: 'pub-h' })
  onTestFinished(() => pub.endAsync(true))
  const N = 1200
  // in bursts of 100: a burst of 1200 on one connection leaves 16 PUBACKs missing, cluster or not (reported)
  for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => pub.publishAsync('h/x', `h${i + k}`, { qos: 1 })))
  // aedes acknowledges a QoS 1 publish before it queues and routes it: the last ones of the last burst are routed
  // while the session reconnects (they reached it before its CONNACK and were lost: see the next test)
  const got: Received[] = []
  const s2 = await connect(a.url(), { clientId: hoarder, clean: false, got })
  onTestFinished(() => s2.endAsync(true))
  await until(s2, got, g => new Set(g.map(x => x.payload)).size >= N, `${N} queued messages`, 20_000)
  expect(new Set(got.map(g => g.payload)).size).toBe(N)
})

test('a returning persistent session gets its CONNACK before the messages routed to it while it connects [MQTT-3.2.0-1]', async ({ onTestFinished }) => {
  // aedes subscribes the session several Redis round trips before it writes the CONNACK; broker/delivery/connack-first.ts
  // holds what is routed to it until the CONNACK is written (without a fix, 3 to 6 of these 20 reconnections got a
  // PUBLISH first, 4 runs). Node g has no outgoing window (max_inflight_messages 0): with one, live deliveries also
  // wait behind the stored queue (broker/delivery/stored-window.ts)
  const g = await spawnMidge(await writeConf(dir, `${conf(redis.url, 'g')}max_inflight_messages 0\n`, 'g.conf'), dir)
  onTestFinished(async () => { await g.kill('SIGKILL') })
  const id = 'connack-first'
  const s1 = await connect(a.url(), { clientId: id, clean: false })
  await s1.subscribeAsync('cf/#', { qos: 1 })
  await s1.endAsync()
  // a steady stream of QoS 1 messages for the session through node A while it reconnects to node G, 20 times
  const pub = await connect(a.url(), { clientId: 'pub-cf' })
  onTestFinished(() => pub.endAsync(true))
  const streaming = new AbortController()
  let sent = 0
  const stream = (async () => {
    while (!streaming.signal.aborted) await Promise.all(Array.from({ length: 20 }, () => pub.publishAsync('cf/x', `c${sent++}`, { qos: 1 })))
  })()
  const firsts: string[] = []
  try {
    for (let k = 0; k < 20; k++) {
      const raw = await RawClient.connect(g.ports[0]!)
      raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: id, keepalive: 60 })
      const first = await raw.next(undefined, 10_000)
      firsts.push(first.cmd === 'publish' ? `publish ${String(first.payload)}` : first.cmd)
      raw.end()
      await raw.closed
    }
  } finally {
    streaming.abort()
    await stream
  }
  // a clean session ends it: nothing stays queued
  await (await connect(g.url(), { clientId: id, clean: true })).endAsync()
  expect(sent).toBeGreaterThan(0)
  expect(firsts).toEqual(Array(20).fill('connack'))
})

test('a client id connecting to B while connected to A takes over: A closes the old connection', async ({ onTestFinished }) => {
  const first = await connect(a.url(), { clientId: 'twin' })
  onTestFinished(() => first.endAsync(true))
  const closed = once(first as unknown as EventEmitter, 'close')
  const second = await connect(b.url(), { clientId: 'twin' })
  onTestFinished(() => second.endAsync(true))
  await closed
  expect(first.connected).toBe(false)
  // the new connection stays up: a QoS 1 round trip through it
  await second.publishAsync('twin/ping', 'x', { qos: 1 })
  expect(second.connected).toBe(true)
  expect(a.output()).toMatch(/Client twin disconnected/)
})

test('a will of a client on A that drops its connection is delivered to a subscriber on B', async ({ onTestFinished }) => {
  const watcher = await connect(b.url(), { clientId: 'watcher' })
  onTestFinished(() => watcher.endAsync(true))
  const got = collect(watcher).messages
  await watcher.subscribeAsync('will/#', { qos: 1 })
  const w = await connect(a.url(), { clientId: 'mortal', will: { topic: 'will/mortal', payload: Buffer.from('gone'), qos: 1, retain: false } })
  ;(w as unknown as { stream: { destroy: () => void } }).stream.destroy()
  await until(watcher, got, g => g.length >= 1, 'the will')
  expect(got).toEqual([{ topic: 'will/mortal', payload: 'gone', qos: 1, retain: false, dup: false }])
  w.end(true)
})

test('SIGKILL of a node loses no acknowledged QoS 1/2 message of an offline persistent session; its wills fire on the other node', async ({ onTestFinished }) => {
  const [c, d] = await Promise.all([node(redis, 'c'), node(redis, 'd')])
  onTestFinished(async () => { await Promise.all([c.kill('SIGKILL'), d.kill('SIGKILL')]) })
  const keeper = await connect(d.url(), { clientId: 'keeper', clean: false })
  await keeper.subscribeAsync('k/#', { qos: 2 })
  await keeper.endAsync()
  const watcher = await connect(d.url(), { clientId: 'watcher-k' })
  onTestFinished(() => watcher.endAsync(true))
  const wills = collect(watcher).messages
  await watcher.subscribeAsync('will/#', { qos: 1 })
  const doomed = await connect(c.url(), { clientId: 'doomed', will: { topic: 'will/doomed', payload: Buffer.from('node died'), qos: 1, retain: false } })
  doomed.on('error', () => {})

  // a burst of QoS 1 and QoS 2 publishes to node c, killed while PUBACKs are still coming in
  const pub = await connect(c.url(), { clientId: 'pub-k' })
  pub.on('error', () => {})
  const acked = new Set<string>()
  const N = 3000
  let killed = false
  const enough = new Promise<void>(resolve => {
    for (let i = 0; i < N; i++) {
      const qos = i % 4 === 3 ? 2 : 1
      const payload = `${qos === 1 ? 'a' : 'b'}-${i}`
      pub.publish(`k/${qos}`, payload, { qos }, (err) => {
        if (err) return
        if (!killed) acked.add(payload)
        if (acked.size >= 600) resolve()
      })
    }
  })
  await enough
  const kill = c.kill('SIGKILL')
  killed = true
  await kill
  pub.end(true)
  expect(acked.size).toBeGreaterThanOrEqual(600)
  expect(acked.size).toBeLessThan(N)

  // the session on node d gets every acknowledged message (node d replays node c's journal once c's lease
  // expires). Midge hands at most max_inflight_messages + max_queued_messages to one client's socket at once and
  // keeps the rest in the store for the next connection (broker/delivery.ts): reconnect if some are still missing.
  const got: Received[] = []
  const missing = (): string[] => { const have = new Set(got.map(g => g.payload)); return [...acked].filter(p => !have.has(p)) }
  let sessions = 0
  for (; sessions < 3 && (sessions === 0 || missing().length > 0); sessions++) {
    const back = await connect(d.url(), { clientId: 'keeper', clean: false, got })
    expect(back.sessionPresent).toBe(true)
    await until(back, got, () => missing().length === 0, `${acked.size} acknowledged messages`, sessions === 0 ? 15_000 : 8_000).catch(() => {})
    await back.endAsync()
  }
  if (missing().length > 0) {
    const queued = await redis.command('LLEN', 'outgoing:keeper')
    throw new Error(`missing ${missing().length} of ${acked.size} after ${sessions} sessions: ${missing().slice(0, 10).join(' ')}; queue length ${queued.trim()}\nnode d:\n${d.output().slice(-3000)}`)
  }
  // QoS 2 messages arrive exactly once (within one connection: a new MQTT.js client forgets what it received)
  const twos = got.filter(g => g.topic === 'k/2').map(g => g.payload)
  if (sessions === 1) expect(twos.length).toBe(new Set(twos).size)
  // the will of the client connected to the dead node, published by node d
  await until(watcher, wills, g => g.length >= 1, 'the will of the client on the dead node', 25_000)
  expect(wills).toEqual([{ topic: 'will/doomed', payload: 'node died', qos: 1, retain: false, dup: false }])
  // (when the kill lands between a PUBACK and the store write, which it does in most runs, node d logs
  // "Node c-1 is gone ...: replaying N acknowledged QoS 1 message(s)"; without the journal such runs lose them)
}, 60_000)

test('Redis unavailable at start-up: one clear line, exit 1', async () => {
  const closedPort = redis.port === 1 ? 2 : 1
  const path = await writeConf(dir, conf(`redis://127.0.0.1:${closedPort}/0`, 'e'), 'e.conf')
  const r = await runMidge(['-c', path], dir)
  expect(r.code).toBe(1)
  expect(r.output).toMatch(new RegExp(`Error: cannot connect to Redis at redis://127\\.0\\.0\\.1:${closedPort}/0 \\(cluster_redis, ${path.replaceAll('.', '\\.')}:3\\): .*ECONNREFUSED`))
  expect(r.output).not.toMatch(/running/)
})

test('Redis with a password: cluster_redis_password connects, a wrong one is one clear line and exit 1', async ({ onTestFinished }) => {
  const r = await startRedis(['--requirepass', 's3cret-pw'])
  onTestFinished(() => r.close())
  const bad = await writeConf(dir, `${conf(r.url, 'pw1')}cluster_redis_password wrong-pw\n`, 'pw-bad.conf')
  const refused = await runMidge(['-c', bad], dir)
  expect(refused.code).toBe(1)
  expect(refused.output).toMatch(/Error: cannot connect to Redis at redis:\/\/127\.0\.0\.1:\d+\/0 \(cluster_redis, .*pw-bad\.conf:3\): WRONGPASS/)
  expect(refused.output).not.toMatch(/wrong-pw|s3cret/)
  const good = await spawnMidge(await writeConf(dir, `${conf(r.url, 'pw2')}cluster_redis_password s3cret-pw\n`, 'pw-good.conf'), dir)
  onTestFinished(async () => { await good.kill('SIGKILL') })
  const c = await connect(good.url(), { clientId: 'pw-client' })
  onTestFinished(() => c.endAsync(true))
  const got = collect(c).messages
  await c.subscribeAsync('pw/#', { qos: 1 })
  await c.publishAsync('pw/x', 'through redis', { qos: 1 })
  await until(c, got, g => g.length >= 1, 'the message')
  expect(got[0]?.payload).toBe('through redis')
  expect(good.output()).not.toMatch(/s3cret/)
})

test('Redis over TLS: rediss:// with cluster_redis_cafile connects; without the CA, one clear line and exit 1', async ({ onTestFinished }) => {
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const run = promisify(execFile)
  const t = (f: string): string => `${dir}/${f}`
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', t('ca.key'), '-out', t('ca.pem'), '-days', '1', '-subj', '/CN=midge-test-ca'])
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', t('redis.key'), '-out', t('redis.csr'), '-subj', '/CN=localhost'])
  const { writeFile } = await import('node:fs/promises')
  await writeFile(t('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  await run('openssl', ['x509', '-req', '-in', t('redis.csr'), '-CA', t('ca.pem'), '-CAkey', t('ca.key'), '-CAcreateserial', '-out', t('redis.pem'), '-days', '1', '-extfile', t('ext')])
  const r = await startRedis([], { cert: t('redis.pem'), key: t('redis.key'), ca: t('ca.pem') })
  onTestFinished(() => r.close())
  expect(r.url).toMatch(/^rediss:/)
  const refused = await runMidge(['-c', await writeConf(dir, conf(r.url, 'tls1'), 'tls-noca.conf')], dir)
  expect(refused.code).toBe(1)
  expect(refused.output).toMatch(/Error: cannot connect to Redis at rediss:\/\/127\.0\.0\.1:\d+\/0 \(cluster_redis, .*tls-noca\.conf:3\): .*(self[- ]signed|unable to verify|certificate)/i)
  const good = await spawnMidge(await writeConf(dir, `${conf(r.url, 'tls2')}cluster_redis_cafile ${t('ca.pem')}\n`, 'tls-ca.conf'), dir)
  onTestFinished(async () => { await good.kill('SIGKILL') })
  const c = await connect(good.url(), { clientId: 'tls-client' })
  onTestFinished(() => c.endAsync(true))
  const got = collect(c).messages
  await c.subscribeAsync('tls/#', { qos: 1 })
  await c.publishAsync('tls/x', 'over TLS', { qos: 1 })
  await until(c, got, g => g.length >= 1, 'the message')
  expect(got[0]?.payload).toBe('over TLS')
})

test('bad cluster options are config errors (exit 3) naming file:line', async () => {
  const cases: Array<[string, RegExp]> = [
    ['cluster_redis http://x:1/0\n', /Invalid cluster_redis value \(http:\/\/x:1\/0\): scheme http: is not redis: or rediss:\. Error found at .*bad\.conf:3\./],
    ['cluster_redis redis://u:secret@x:1/zz\n', /Invalid cluster_redis value \(redis:\/\/u:\[redacted\]@x:1\/zz\): database zz is not a number\./],
    ['cluster_redis redis://x:1/0\nnode_id a/b\n', /Invalid node_id value \(a\/b\).*bad\.conf:4\./],
    ['node_id a\n', /node_id given without cluster_redis/]
  ]
  for (const [extra, re] of cases) {
    const path = await writeConf(dir, `listener 0 127.0.0.1\nallow_anonymous true\n${extra}`, 'bad.conf')
    const r = await runMidge(['-c', path], dir)
    expect(r.code, extra).toBe(3)
    expect(r.output, extra).toMatch(re)
    expect(r.output).not.toMatch(/secret/)
  }
})

test('midge check prints the cluster settings without the Redis password', async () => {
  const path = await writeConf(dir, 'listener 0 127.0.0.1\ncluster_redis redis://u:hunter2@h:1/0\ncluster_redis_password hunter3\nnode_id n1\n', 'secret.conf')
  const r = await runMidge(['check', '-c', path], dir)
  expect(r.code).toBe(0)
  expect(r.output).toContain('"redisUrl": "redis://u:[redacted]@h:1/0"')
  expect(r.output).toContain('"redisPassword": "[redacted]"')
  expect(r.output).toContain('"nodeId": "n1"')
  expect(r.output).not.toMatch(/hunter/)
})

test('docker/compose.cluster.yaml is valid: Redis, two Midge nodes, HAProxy; the nodes\' config checks', async () => {
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const { fileURLToPath } = await import('node:url')
  const docker = fileURLToPath(new URL('../../docker/', import.meta.url))
  const run = promisify(execFile)
  const services = (await run('docker-compose', ['-f', 'compose.cluster.yaml', 'config', '--services'], { cwd: docker })).stdout
  expect(services.trim().split('\n').sort()).toEqual(['haproxy', 'midge-1', 'midge-2', 'redis'])
  const full = (await run('docker-compose', ['-f', 'compose.cluster.yaml', 'config'], { cwd: docker })).stdout
  expect(full).toMatch(/image: redis:7\.2/)
  expect(full).toMatch(/image: haproxy:2\.8/)
  expect(full).toMatch(/hostname: midge-2/)
  const r = await runMidge(['check', '-c', `${docker}cluster/midge.conf`], dir)
  expect(r.code).toBe(0)
  expect(r.output).toContain('"redisUrl": "redis://redis:6379/0"')
})

test('Redis lost while running: logged, publishes and connections refused, everything resumes when it is back', async ({ onTestFinished }) => {
  const r2 = await startRedis()
  onTestFinished(() => r2.close())
  // node e also serves /healthz (websockets listener): what the load balancer checks (docker/cluster/haproxy.cfg)
  const [e, f] = await Promise.all([
    spawnMidge(await writeConf(dir, `${conf(r2.url, 'e')}listener 0 127.0.0.1\nprotocol websockets\n`, 'e-ws.conf'), dir),
    node(r2, 'f')
  ])
  onTestFinished(async () => { await Promise.all([e.kill('SIGKILL'), f.kill('SIGKILL')]) })
  const health = async (): Promise<number> => (await fetch(`http://127.0.0.1:${e.ports[1]}/healthz`)).status
  expect(await health()).toBe(200)
  const watch = await connect(f.url(), { clientId: 'watch', clean: false, reconnectPeriod: 100, reconnectOnConnackError: true })
  onTestFinished(() => watch.endAsync(true))
  watch.on('error', () => {})
  const got = collect(watch).messages
  await watch.subscribeAsync('z/#', { qos: 1 })
  const pub = await connect(e.url(), { clientId: 'pub-z', reconnectPeriod: 100, reconnectOnConnackError: true })
  onTestFinished(() => pub.endAsync(true))
  const pubErrors: string[] = []
  pub.on('error', err => pubErrors.push(err.message))
  await pub.publishAsync('z/1', 'before', { qos: 1 })
  await until(watch, got, g => g.length >= 1, 'the first message')

  // Redis goes away (keeping its data, as a Redis with persistence would)
  // (not events.once: a client already closed by the grace period gets CONNACK 3 on its next try, and that
  // 'error' would reject it; the 'close' that follows is what counts)
  const closed = (c: MqttClient): Promise<void> => new Promise(resolve => c.once('close', () => resolve()))
  const watchClosed = closed(watch)
  await r2.stop({ save: true })
  await Promise.all([e.logged(/Redis connection lost \(redis:\/\/127\.0\.0\.1:\d+\/0, \w+\)/, 15_000), f.logged(/Redis connection lost/, 15_000)])
  // the load balancer takes the node out: /healthz cannot write its probe to the store
  expect(await health()).toBe(503)
  // a publish now is not acknowledged: the connection closes, MQTT.js keeps the message
  let acked = false
  const during = pub.publishAsync('z/2', 'during', { qos: 1 }).then(() => { acked = true })
  await closed(pub)
  expect(acked).toBe(false)
  // a new connection gets CONNACK 3 (server unavailable)
  const refused = await connect(e.url(), { clientId: 'newcomer' }).then(() => 'connected', (err: Error & { code?: number }) => err.code)
  expect(refused).toBe(3)
  // the subscriber on f learns it too: its connection is closed (at the latest once the outage lasts GRACE_MS)
  await watchClosed

  await r2.start()
  await Promise.all([e.logged(/Redis connection back \(redis:\/\/127\.0\.0\.1:\d+\/0\) after \d+ ms/, 15_000), f.logged(/Redis connection back/, 15_000)])
  expect(await health()).toBe(200)
  // the publisher reconnected and sent its message again; the persistent subscriber gets it
  await during
  await until(watch, got, g => g.some(x => x.payload === 'during'), 'the message published during the outage', 20_000)
  await pub.publishAsync('z/3', 'after', { qos: 1 })
  await until(watch, got, g => g.some(x => x.payload === 'after'), 'a message after recovery')
  expect(got.map(g => g.payload).filter((p, i, all) => all.indexOf(p) === i)).toEqual(['before', 'during', 'after'])
  // while Redis was away, the publisher's reconnections were refused with CONNACK 3
  expect(pubErrors).toContain('Connection refused: Server unavailable')
}, 45_000)
