/**
 * `node dist/bench/cluster-outage.js [--down-ms N] [--rate N] [--kill]`: what happens to traffic in flight when Redis
 * goes away for a while and comes back. Two Midge nodes on a redis-server started here (temp dir, removed
 * at the end); a publisher on node 1 sends QoS 1 and QoS 0 messages at a steady rate to a persistent QoS 1
 * subscriber and a clean QoS 0 subscriber on node 2 (MQTT.js, reconnecting every 200 ms, also after CONNACK 3).
 * Redis is stopped with SHUTDOWN SAVE (a Redis with persistence restarting) or, with --kill, SIGKILLed (a Redis
 * without persistence: its data is gone), then started again on the same port.
 *
 * Needs the devDependency mqtt: a development tool, not part of the daemon.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { once } from 'node:events'
import { freePort } from './brokers.js'

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js')
const { values } = parseArgs({ options: { 'down-ms': { type: 'string' }, rate: { type: 'string' }, kill: { type: 'boolean', default: false } } })
const DOWN_MS = Number(values['down-ms'] ?? 3000)
const RATE = Number(values.rate ?? 200)
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function start (cmd: string, args: string[], ready: RegExp): Promise<{ p: ChildProcess, out: () => string }> {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MIDGE_LOG_FORMAT: 'json' } })
  let out = ''
  return new Promise((resolve, reject) => {
    const on = (d: Buffer): void => { out += d.toString(); if (ready.test(out)) resolve({ p, out: () => out }) }
    p.stdout!.on('data', on)
    p.stderr!.on('data', on)
    p.once('exit', code => reject(new Error(`${cmd} exited (${code}):\n${out}`)))
  })
}

async function redisCommand (port: number, ...args: string[]): Promise<void> {
  const s = netConnect(port, '127.0.0.1')
  await once(s, 'connect')
  s.write(`*${args.length}\r\n${args.map(a => `$${a.length}\r\n${a}\r\n`).join('')}`)
  await Promise.race([once(s, 'data'), once(s, 'close')])
  s.destroy()
}

async function main (): Promise<void> {
  const { default: mqtt } = await import('mqtt')
  const dir = mkdtempSync(join(tmpdir(), 'midge-outage-'))
  const port = await freePort()
  const redisArgs = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '']
  let redis = await start('redis-server', redisArgs, /Ready to accept connections/)
  const nodes = await Promise.all([1, 2].map(async k => {
    const conf = join(dir, `n${k}.conf`)
    writeFileSync(conf, `listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\nsys_interval 0\ncluster_redis redis://127.0.0.1:${port}/0\nnode_id n${k}\n`)
    const m = await start(process.execPath, [MAIN, '-c', conf], /Midge version \S+ running/)
    return { ...m, url: `mqtt://127.0.0.1:${/Opening tcp listen socket on port (\d+)\./.exec(m.out())![1]}` }
  }))
  const opts = { reconnectPeriod: 200, reconnectOnConnackError: true, connectTimeout: 5000 }
  const sub1 = await mqtt.connectAsync(nodes[1]!.url, { ...opts, clientId: 'outage-sub1', clean: false })
  const sub0 = await mqtt.connectAsync(nodes[1]!.url, { ...opts, clientId: 'outage-sub0', clean: true })
  const got1 = new Map<string, number>()
  let got0 = 0
  sub1.on('message', (_t, p) => got1.set(p.toString(), (got1.get(p.toString()) ?? 0) + 1))
  sub0.on('message', () => { got0++ })
  await sub1.subscribeAsync('o/1', { qos: 1 })
  await sub0.subscribeAsync('o/0', { qos: 0 })
  const pub = await mqtt.connectAsync(nodes[0]!.url, { ...opts, clientId: 'outage-pub' })
  // the outage makes these clients fail on purpose; what they lost is what the run counts
  for (const c of [sub1, sub0, pub]) c.on('error', () => {})
  const T0 = Date.now()
  if (process.env.OUTAGE_DEBUG) {
    for (const [n, c] of [['sub1', sub1], ['sub0', sub0], ['pub', pub]] as const) {
      c.on('connect', () => process.stderr.write(`${Date.now() - T0} ${n} connect\n`))
      c.on('close', () => process.stderr.write(`${Date.now() - T0} ${n} close\n`))
      c.on('error', (e) => process.stderr.write(`${Date.now() - T0} ${n} error ${e.message}\n`))
    }
    let last0 = 0
    setInterval(() => { process.stderr.write(`${Date.now() - T0} got0=${got0} (+${got0 - last0}) got1=${got1.size} acked=${acked.size} sent=${sent1}\n`); last0 = got0 }, 500).unref()
  }
  const acked = new Set<string>()
  let sent1 = 0
  let sent0 = 0
  let stopped = false
  let ackDuringOutage = 0
  let down = false
  const timer = setInterval(() => {
    if (stopped) return
    const id = `m${sent1++}`
    pub.publish('o/1', id, { qos: 1 }, err => { if (!err) { acked.add(id); if (down) ackDuringOutage++ } })
    pub.publish('o/0', `z${sent0++}`, { qos: 0 })
  }, 1000 / RATE)
  await sleep(2000)
  const t0 = Date.now()
  const idAtDown = sent1
  down = true
  if (values.kill) redis.p.kill('SIGKILL')
  else await redisCommand(port, 'SHUTDOWN', 'SAVE')
  await once(redis.p, 'exit')
  await sleep(DOWN_MS)
  redis = await start('redis-server', redisArgs, /Ready to accept connections/)
  const tUp = Date.now()
  const idAtUp = sent1
  down = false
  const firstAfter = await new Promise<number>(resolve => {
    const n = got0
    const i = setInterval(() => {
      if (got0 > n) { clearInterval(i); resolve(Date.now() - tUp) } else if (Date.now() - tUp > 20_000) { clearInterval(i); resolve(NaN) }
    }, 10)
  })
  await sleep(2000)
  stopped = true
  clearInterval(timer)
  // drain: every publish the client still holds gets its chance
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && (acked.size < sent1 || [...acked].some(id => !got1.has(id)))) await sleep(100)
  const lostAcked = [...acked].filter(id => !got1.has(id)).length
  const dups = [...got1.values()].filter(n => n > 1).length
  const lostIds = [...acked].filter(id => !got1.has(id)).map(id => Number(id.slice(1))).sort((x, y) => x - y)
  if (process.env.OUTAGE_DEBUG) process.stderr.write(`down at m${idAtDown}, up at m${idAtUp}; lost ${lostIds.slice(0, 5).join(',')} .. ${lostIds.slice(-5).join(',')}\n`)
  if (process.env.OUTAGE_DEBUG) process.stderr.write(nodes.map(n => n.out().split('\n').filter(l => !/New connection|New client/.test(l)).join('\n')).join('\n----\n'))
  const lines = [
    `Redis ${values.kill ? 'SIGKILLed (data lost)' : 'stopped with SHUTDOWN SAVE (data kept)'} for ${Date.now() - t0 - (Date.now() - tUp)} ms, ${RATE} msg/s of QoS 1 and ${RATE} msg/s of QoS 0`,
    `QoS 1: published ${sent1}, acknowledged ${acked.size} (${ackDuringOutage} while Redis was down; the rest are still the publisher's to resend), received ${got1.size} distinct, acknowledged but not received ${lostAcked}, received twice ${dups}`,
    `QoS 0: published ${sent0}, received ${got0} (${sent0 - got0} lost)`,
    `first message delivered ${firstAfter} ms after Redis accepted connections again`
  ]
  process.stdout.write(lines.join('\n') + '\n')
  for (const c of [sub1, sub0, pub]) c.end(true)
  for (const n of nodes) n.p.kill('SIGTERM')
  redis.p.kill('SIGKILL')
  await sleep(500)
  rmSync(dir, { recursive: true, force: true })
}

await main()
