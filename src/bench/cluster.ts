/**
 * `node dist/bench/cluster.js [--measure-ms N] [--runs N]`: throughput of one Midge node without Redis, one node on
 * Redis and two nodes on one Redis, in one run. It reuses the load generator of `npm run bench`
 * (dist/bench/worker.js, unchanged) and Debian's redis-server (started here on a free port, no files kept).
 *
 * With two nodes, half the publishers and half the subscribers connect to each node, so every message crosses
 * Redis to reach the subscribers on the other node. The figures are delivered messages per second, summed over all
 * subscribers, and the CPU of every broker process (Midge nodes + redis-server) in % of one core.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, cpus, loadavg } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cpuMsOf, freePort } from './brokers.js'
import type { ToWorker, FromWorker, GroupSpec, Collected } from './protocol.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const MAIN = join(HERE, '..', 'main.js')
const WORKER = join(HERE, 'worker.js')

const { values } = parseArgs({ options: { 'measure-ms': { type: 'string' }, 'warm-ms': { type: 'string' }, runs: { type: 'string' } } })
const MEASURE_MS = Number(values['measure-ms'] ?? 4000)
const WARM_MS = Number(values['warm-ms'] ?? 1000)
const RUNS = Number(values.runs ?? 3)
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

interface Proc { pid: number, stop: () => Promise<void> }

function startProcess (cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env): Promise<{ p: ChildProcess, out: () => string }> {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${cmd} did not start:\n${out}`)) }, 20_000)
    const on = (d: Buffer): void => { out += d.toString(); if (ready.test(out)) { clearTimeout(t); resolve({ p, out: () => out }) } }
    p.stdout!.on('data', on)
    p.stderr!.on('data', on)
    p.once('exit', code => { clearTimeout(t); reject(new Error(`${cmd} exited (${code}):\n${out}`)) })
  })
}

const stopper = (p: ChildProcess) => async (): Promise<void> => {
  if (p.exitCode !== null || p.signalCode !== null) return
  const gone = new Promise(resolve => p.once('exit', resolve))
  p.kill('SIGTERM')
  const t = setTimeout(() => p.kill('SIGKILL'), 5000)
  await gone
  clearTimeout(t)
}

async function startRedis (dir: string): Promise<Proc & { url: string }> {
  const port = await freePort()
  const { p } = await startProcess('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', ''], /Ready to accept connections/)
  return { pid: p.pid!, url: `redis://127.0.0.1:${port}/0`, stop: stopper(p) }
}

async function startMidge (dir: string, name: string, extra: string): Promise<Proc & { port: number }> {
  const conf = join(dir, `${name}.conf`)
  writeFileSync(conf, `listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\nsys_interval 0\n${extra}`)
  const { p, out } = await startProcess(process.execPath, [MAIN, '-c', conf], /Midge version \S+ running/, { ...process.env, MIDGE_LOG_FORMAT: 'json' })
  const port = Number(/Opening tcp listen socket on port (\d+)\./.exec(out())?.[1])
  return { pid: p.pid!, port, stop: stopper(p) }
}

class Worker {
  private readonly child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  private readonly queue: Array<(m: FromWorker) => void> = []
  constructor () { this.child.on('message', (m: FromWorker) => this.queue.shift()?.(m)) }
  async request<T extends FromWorker> (m: ToWorker): Promise<T> {
    const r = await new Promise<FromWorker>(resolve => { this.queue.push(resolve); this.child.send(m) })
    if (!r.ok) throw new Error(`worker ${r.cmd}: ${r.error}`)
    return r as T
  }

  async close (): Promise<void> {
    const gone = new Promise(resolve => this.child.once('exit', resolve))
    // a worker that already exited cannot answer; `gone` settles either way
    await this.request({ cmd: 'close' }).catch(() => {})
    await gone
  }
}

interface Result { msgPerSec: number, cpuPct: number, usPerMsg: number, lost: number }
interface Scenario { name: string, subs: GroupSpec[], pubs: GroupSpec[] }

const sub = (filter: string, qos: 0 | 1, count: number, prefix: string): GroupSpec => ({ kind: 'sub', count, idPrefix: prefix, clean: true, filter, qos })
const pub = (count: number, qos: 0 | 1, prefix: string): GroupSpec =>
  ({ kind: 'pub', count, idPrefix: prefix, clean: true, topic: 'bench/in/{i}', qos, payloadBytes: 64, ...(qos === 0 ? { mode: 'paced' as const } : { mode: 'window' as const, window: 10 }) })

const SCENARIOS: Scenario[] = [
  { name: 'fanin-q0', subs: [sub('bench/in/#', 0, 4, 's-')], pubs: [pub(8, 0, 'p-')] },
  { name: 'fanin-q1', subs: [sub('bench/in/#', 1, 4, 's-')], pubs: [pub(8, 1, 'p-')] }
]

/** The groups of node k of n: an equal share of every group, with ids unique across nodes. */
function share (groups: GroupSpec[], k: number, n: number): GroupSpec[] {
  return groups.map(g => ({ ...g, count: Math.floor(g.count / n) + (k < g.count % n ? 1 : 0), idPrefix: `${g.idPrefix}n${k}-` })).filter(g => g.count > 0)
}

async function measure (s: Scenario, ports: number[], pids: number[]): Promise<Result> {
  const subW = ports.map(() => new Worker())
  const pubW = ports.map(() => new Worker())
  try {
    const t = (port: number) => ({ kind: 'tcp' as const, host: '127.0.0.1', port })
    await Promise.all(subW.map((w, k) => w.request({ cmd: 'setup', transport: t(ports[k]!), connectConcurrency: 50, groups: share(s.subs, k, ports.length) })))
    await Promise.all(pubW.map((w, k) => w.request({ cmd: 'setup', transport: t(ports[k]!), connectConcurrency: 50, groups: share(s.pubs, k, ports.length) })))
    const all = [...subW, ...pubW]
    await Promise.all(all.map(w => w.request({ cmd: 'start' })))
    await sleep(WARM_MS)
    const cpu0 = pids.map(cpuMsOf)
    const t0 = process.hrtime.bigint()
    await Promise.all(all.map(w => w.request({ cmd: 'mark' })))
    await sleep(MEASURE_MS)
    const got = await Promise.all(subW.map(w => w.request<{ ok: true, cmd: 'collect', data: Collected }>({ cmd: 'collect' })))
    const pubGot = await Promise.all(pubW.map(w => w.request<{ ok: true, cmd: 'collect', data: Collected }>({ cmd: 'collect' })))
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpu = pids.map(cpuMsOf).reduce((sum, c, i) => sum + c - cpu0[i]!, 0)
    await Promise.all(all.map(w => w.request({ cmd: 'stopPublishing' })))
    const received = got.reduce((sum, g) => sum + g.data.received, 0)
    const lost = [...got, ...pubGot].reduce((sum, g) => sum + g.data.lost, 0)
    return { msgPerSec: received / seconds, cpuPct: cpu / (seconds * 10), usPerMsg: received > 0 ? cpu * 1000 / received : NaN, lost }
  } finally {
    await Promise.all([...subW, ...pubW].map(w => w.close()))
  }
}

const median = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }

async function main (): Promise<void> {
  process.stdout.write(`cluster bench: ${RUNS} run(s) x ${MEASURE_MS} ms; node ${process.version}; ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}; load ${loadavg().map(x => x.toFixed(2)).join(' ')}\n`)
  const setups = ['1 node', '1 node + Redis', '2 nodes + Redis'] as const
  const rows: Record<string, Record<string, Result[]>> = {}
  for (let run = 0; run < RUNS; run++) {
    for (const setup of setups) {
      const dir = mkdtempSync(join(tmpdir(), 'midge-cluster-bench-'))
      const procs: Proc[] = []
      try {
        let ports: number[]
        if (setup === '1 node') {
          const m = await startMidge(dir, 'solo', '')
          procs.push(m)
          ports = [m.port]
        } else {
          const r = await startRedis(dir)
          procs.push(r)
          const n = setup === '1 node + Redis' ? 1 : 2
          const nodes = await Promise.all(Array.from({ length: n }, (_, k) => startMidge(dir, `n${k}`, `cluster_redis ${r.url}\nnode_id n${k}\n`)))
          procs.push(...nodes)
          ports = nodes.map(x => x.port)
        }
        for (const s of SCENARIOS) {
          const m = await measure(s, ports, procs.map(p => p.pid))
          ;((rows[s.name] ??= {})[setup] ??= []).push(m)
          process.stderr.write(`  run ${run + 1} ${s.name} ${setup}: ${Math.round(m.msgPerSec)} msg/s, cpu ${m.cpuPct.toFixed(0)}%, ${m.usPerMsg.toFixed(1)} us/msg${m.lost ? `, ${m.lost} connection(s) lost` : ''}\n`)
        }
      } finally {
        for (const p of procs.reverse()) await p.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
  process.stdout.write('\n(medians; cpu% = all Midge nodes + redis-server, % of one core; us/msg = their CPU time per delivered message)\nscenario   setup               msg/s      cpu%   us/msg\n')
  for (const [name, bySetup] of Object.entries(rows)) {
    for (const setup of setups) {
      const r = bySetup[setup] ?? []
      process.stdout.write(`${name.padEnd(10)} ${setup.padEnd(18)} ${String(Math.round(median(r.map(x => x.msgPerSec)))).padStart(9)}  ${median(r.map(x => x.cpuPct)).toFixed(0).padStart(5)}  ${median(r.map(x => x.usPerMsg)).toFixed(1).padStart(7)}\n`)
    }
  }
}

await main()
