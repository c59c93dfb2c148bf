/**
 * The load balancer of docker/compose.cluster.yaml, run without Docker: Debian's HAProxy on the shipped
 * docker/cluster/haproxy.cfg in front of two Midge nodes on the shipped docker/cluster/midge.conf and a real Redis,
 * with host names and ports rewritten to free loopback ones (`npm run build` first). It shows that send-proxy-v2 and
 * `enable_proxy_protocol 2` hand each node the client's own address and port, over TCP and WebSocket; that the
 * health checks (sent with a PROXY header too) pass; and that when a node dies HAProxy takes it out and its
 * persistent clients find their session on the other node.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import net from 'node:net'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket, createWebSocketStream } from 'ws'
import mqttPacket from 'mqtt-packet'
import { tempDir } from '../helpers/start-broker.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { freePort, spawnMidge, watch, writeConf, type Daemon, type Watched } from '../helpers/processes.js'
import { connect, collect, type Received } from '../helpers/mqtt.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const CONNECT = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'ws-behind-haproxy', keepalive: 30 })

interface Node { name: string, tcp: number, ws: number, daemon?: Daemon }

let redis: TestRedis
let dir: string
let removeDir: () => Promise<void>
let haproxy: Watched
const front = { tcp: 0, ws: 0 }
const nodes: Node[] = []

/** docker/cluster/midge.conf for one node: its ports on loopback, the test's Redis, a node id (compose gives each container its host name). */
function nodeConf (n: Node): string {
  const shipped = readFileSync(join(ROOT, 'docker/cluster/midge.conf'), 'utf8')
  const conf = shipped
    .replace(/^listener 1883$/m, `listener ${n.tcp} 127.0.0.1`)
    .replace(/^listener 8080$/m, `listener ${n.ws} 127.0.0.1`)
    .replace(/^cluster_redis .*$/m, `cluster_redis ${redis.url}`)
  expect(conf).not.toBe(shipped)
  return `${conf}node_id ${n.name}\n`
}

/**
 * docker/cluster/haproxy.cfg on loopback. `no strict-limits`: its `maxconn 100000` needs a file limit of 200,024,
 * which a container gets but this machine's 20,000 does not (HAProxy then refuses to start).
 */
function haproxyConf (): string {
  let conf = readFileSync(join(ROOT, 'docker/cluster/haproxy.cfg'), 'utf8')
    .replace(/^ {2}maxconn 100000$/m, '  maxconn 100000\n  no strict-limits')
    .replace('bind :1883', `bind 127.0.0.1:${front.tcp}`)
    .replace('bind :8080', `bind 127.0.0.1:${front.ws}`)
  for (const n of nodes) {
    conf = conf
      .replace(new RegExp(`${n.name}:1883 (.*) port 8080`), `127.0.0.1:${n.tcp} $1 port ${n.ws}`)
      .replace(`${n.name}:8080`, `127.0.0.1:${n.ws}`)
  }
  expect(conf).not.toMatch(/midge-\d:|bind :/)
  return conf
}

beforeAll(async () => {
  ({ dir, remove: removeDir } = await tempDir())
  redis = await startRedis()
  for (const name of ['midge-1', 'midge-2']) nodes.push({ name, tcp: await freePort(), ws: await freePort() })
  front.tcp = await freePort()
  front.ws = await freePort()
  const cfg = await writeConf(dir, haproxyConf(), 'haproxy.cfg')
  haproxy = watch(spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] }))
  // the nodes are not up yet: HAProxy's first checks fail, which shows it runs and checks
  await haproxy.waitFor(/backend 'midge-ws' has no server available/, 15_000)
  for (const n of nodes) n.daemon = await spawnMidge(await writeConf(dir, nodeConf(n), `${n.name}.conf`), dir)
  // check-send-proxy: a node answers /healthz behind a PROXY v2 header, or it stays DOWN
  for (const n of nodes) {
    for (const backend of ['midge-mqtt', 'midge-ws']) await haproxy.waitFor(new RegExp(`Server ${backend}/${n.name} is UP`), 20_000)
  }
}, 90_000)

afterAll(async () => {
  await haproxy?.kill('SIGTERM')
  for (const n of nodes) await n.daemon?.stop()
  await redis?.close()
  await removeDir?.()
})

/** The node whose log shows a connection from 127.0.0.1:`port` (the client's own source port). */
async function nodeThatLogged (port: number): Promise<Node> {
  const line = new RegExp(`New connection from 127\\.0\\.0\\.1:${port} on port`)
  return await Promise.any(nodes.map(async n => { await n.daemon!.logged(line, 10_000); return n }))
}

test('TCP: the node logs the client\'s own address and port, not HAProxy\'s', async ({ onTestFinished }) => {
  const c = await connect(`mqtt://127.0.0.1:${front.tcp}`, { clientId: 'tcp-behind-haproxy' }, onTestFinished)
  const local = (c.stream as net.Socket).localPort!
  const n = await nodeThatLogged(local)
  await n.daemon!.logged(new RegExp(`New client connected from 127\\.0\\.0\\.1:${local} as tcp-behind-haproxy \\(p4, c1, k60\\)`), 10_000)
})

test('WebSocket: the same through the websockets frontend', async () => {
  let socket: net.Socket | undefined
  const ws = new WebSocket(`ws://127.0.0.1:${front.ws}/mqtt`, ['mqtt'], {
    createConnection: (opts: { port?: unknown, host?: unknown }) => { socket = net.connect(Number(opts.port), String(opts.host)); return socket }
  })
  const stream = createWebSocketStream(ws)
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  stream.write(CONNECT)
  const [first] = await new Promise<Buffer[]>(resolve => stream.once('data', (d: Buffer) => resolve([d])))
  expect([...first!]).toEqual([0x20, 0x02, 0x00, 0x00])
  const n = await nodeThatLogged(socket!.localPort!)
  await n.daemon!.logged(/New client connected from 127\.0\.0\.1:\d+ as ws-behind-haproxy/, 10_000)
  stream.destroy()
})

test('a node dies: HAProxy takes it out, and a persistent client comes back through it to its session on the other node', async ({ onTestFinished }) => {
  const url = `mqtt://127.0.0.1:${front.tcp}`
  const dev = await connect(url, { clientId: 'dev-7', clean: false })
  await dev.subscribeAsync('dev-7/commands', { qos: 1 })
  const home = await nodeThatLogged((dev.stream as net.Socket).localPort!)
  const other = nodes.find(n => n !== home)!
  dev.end(true)
  const from = haproxy.output().length
  await home.daemon!.kill('SIGKILL')
  // before HAProxy has seen it: a connection it sends to the dead node is redispatched (option redispatch)
  const p = await connect(url, { clientId: 'operator' }, onTestFinished)
  await haproxy.waitFor(new RegExp(`Server midge-mqtt/${home.name} is DOWN`), 20_000, from)
  // queued for the session while it is away, through the node that is left
  await p.publishAsync('dev-7/commands', 'reboot', { qos: 1 })
  const got: Received[] = []
  const back = await connect(url, { clientId: 'dev-7', clean: false, got }, onTestFinished)
  expect(back.sessionPresent).toBe(true)
  await collect(back).until(() => got.length >= 1, 'the queued command')
  expect(got.map(m => [m.topic, m.payload, m.qos])).toEqual([['dev-7/commands', 'reboot', 1]])
  await other.daemon!.logged(new RegExp(`New client connected from 127\\.0\\.0\\.1:${(back.stream as net.Socket).localPort!} as dev-7 \\(p4, c0, k60\\)`), 10_000)
}, 60_000)
