/**
 * The bench scenarios. Each one is bounded in time, runs on loopback, and measures one primary metric
 * plus extras; the runner repeats it per broker and reports medians.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuMsOf, rssKiBOf, lastLines, type RunningBroker, type BrokerOptions } from './brokers.js'
import type { ToWorker, FromWorker, GroupSpec, TransportSpec, Collected } from './protocol.js'

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'worker.js')
/** How long a worker may take to close its connections and exit before it is killed. */
const WORKER_CLOSE_MS = 3_000

export interface Timing {
  warmMs: number
  measureMs: number
  latencyMs: number
  /**
   * Latency runs warm up longer, at their own rate: for the first 10-15 s at 1,000 msg/s V8 is still compiling the
   * per-message functions, on helper threads that take the CPU from the broker's main thread for 0.5-2 ms at a time,
   * and that start-up tail, not the steady state, would decide the p99 (docs/performance.md, "JIT warm-up").
   */
  latencyWarmMs: number
  /** The cold window of latency runs: `latencyMs` measured from this long after the load starts, inside the warm-up. */
  latencyColdAtMs: number
  idleConnections: number
  retained: number
}

export const FULL: Timing = { warmMs: 1000, measureMs: 4000, latencyMs: 5000, latencyWarmMs: 15_000, latencyColdAtMs: 2000, idleConnections: 10_000, retained: 10_000 }
export const QUICK: Timing = { warmMs: 500, measureMs: 1500, latencyMs: 2000, latencyWarmMs: 3000, latencyColdAtMs: 1000, idleConnections: 2000, retained: 2000 }

export interface Measurement {
  /** The primary metric. */
  value: number
  extra: Record<string, number>
  /** Broker CPU over the measured window, % of one core. */
  brokerCpuPct?: number
  /** All generator workers' CPU over the measured window, % of one core. */
  genCpuPct?: number
}

export interface ScenarioContext {
  broker: RunningBroker
  timing: Timing
  ca?: string
}

/** A second figure of the same runs, shown as a row of its own (with its own ratios) under the scenario's. */
export interface DerivedRow {
  name: string
  description: string
  unit: string
  better: 'higher' | 'lower'
  /** The key in `Measurement.extra` it reads. */
  extra: string
}

/**
 * `persistence: 'store'` runs Midge and bare aedes on LevelDB and mosquitto with its default (in memory): the
 * comparison a Pi owner makes between mosquitto as installed and Midge's durable store.
 */
export type PersistenceNeed = boolean | 'store'

export interface Scenario {
  name: string
  description: string
  unit: string
  better: 'higher' | 'lower'
  needs: Omit<BrokerOptions, 'tls' | 'persistence'> & { tls: boolean, persistence: PersistenceNeed }
  derived?: DerivedRow[]
  run: (ctx: ScenarioContext) => Promise<Measurement>
}

class Worker {
  private readonly child: ChildProcess
  private readonly queue: Array<{ resolve: (m: FromWorker) => void, reject: (e: Error) => void }> = []
  private exited = false

  constructor () {
    this.child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.child.on('message', (m: FromWorker) => {
      const w = this.queue.shift()
      if (!w) return
      if (m.ok) w.resolve(m)
      else w.reject(new Error(`worker ${m.cmd}: ${m.error}`))
    })
    this.child.once('exit', () => {
      this.exited = true
      for (const w of this.queue.splice(0)) w.reject(new Error('worker exited'))
    })
  }

  request<T extends FromWorker> (m: ToWorker): Promise<T> {
    if (this.exited) return Promise.reject(new Error('worker exited'))
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve: resolve as (m: FromWorker) => void, reject })
      this.child.send(m)
    })
  }

  async close (): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>(resolve => this.child.once('exit', () => resolve()))
    const timer = setTimeout(() => this.child.kill('SIGKILL'), WORKER_CLOSE_MS)
    // a worker that already exited cannot answer; `gone` settles either way (or the timer kills it)
    await this.request({ cmd: 'close' }).catch(() => {})
    await gone
    clearTimeout(timer)
  }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function transportOf (ctx: ScenarioContext, kind: TransportSpec['kind']): TransportSpec {
  const p = ctx.broker.ports
  const port = kind === 'tcp' ? p.tcp : kind === 'ws' ? p.ws : p.tls
  if (port === undefined) throw new Error(`broker has no ${kind} listener`)
  return { kind, host: '127.0.0.1', port, ca: ctx.ca }
}

function assertAlive (ctx: ScenarioContext): void {
  const e = ctx.broker.exited()
  if (e) throw new Error(`broker died (code ${e.code ?? '-'}, signal ${e.signal ?? '-'}): ${lastLines(ctx.broker.stderrTail())}`)
}

interface LoadPlan {
  transport: TransportSpec['kind']
  subs: GroupSpec[]
  pubs: GroupSpec[]
  /** Split subscribers over this many workers (default 1). */
  subWorkers?: number
}

/** A window measured inside the warm-up: from `atMs` after the load starts, for `ms`. */
interface EarlyWindow { atMs: number, ms: number }

/**
 * Subscribers in one worker (or more), publishers in another; returns totals over the measured window (and, given
 * `early`, the subscribers' figures over that window of the warm-up).
 */
async function runLoad (ctx: ScenarioContext, plan: LoadPlan, measureMs: number, warmMs = ctx.timing.warmMs, early?: EarlyWindow): Promise<{ subs: Collected[], pubs: Collected[], earlySubs?: Collected[], brokerCpuPct: number, genCpuPct: number, seconds: number }> {
  const t = transportOf(ctx, plan.transport)
  const subWorkers = Array.from({ length: plan.subWorkers ?? 1 }, () => new Worker())
  const pubWorker = new Worker()
  const all = [...subWorkers, pubWorker]
  try {
    // subscribers first, so nothing is published before they listen
    await Promise.all(subWorkers.map((w, k) => w.request({ cmd: 'setup', transport: t, connectConcurrency: 100, groups: splitGroups(plan.subs, k, subWorkers.length) })))
    await pubWorker.request({ cmd: 'setup', transport: t, connectConcurrency: 100, groups: plan.pubs })
    assertAlive(ctx)
    await Promise.all(all.map(w => w.request({ cmd: 'start' })))
    let earlySubs: Collected[] | undefined
    if (early !== undefined) {
      await sleep(early.atMs)
      await Promise.all(subWorkers.map(w => w.request({ cmd: 'mark' })))
      await sleep(early.ms)
      earlySubs = (await Promise.all(subWorkers.map(w => w.request<{ ok: true, cmd: 'collect', data: Collected }>({ cmd: 'collect' })))).map(r => r.data)
      await sleep(Math.max(0, warmMs - early.atMs - early.ms))
    } else {
      await sleep(warmMs)
    }
    assertAlive(ctx)
    const cpu0 = cpuMsOf(ctx.broker.pid)
    const t0 = process.hrtime.bigint()
    await Promise.all(all.map(w => w.request({ cmd: 'mark' })))
    await sleep(measureMs)
    const results = await Promise.all(all.map(w => w.request<{ ok: true, cmd: 'collect', data: Collected }>({ cmd: 'collect' })))
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    assertAlive(ctx)
    const cpu1 = cpuMsOf(ctx.broker.pid)
    await Promise.all(all.map(w => w.request({ cmd: 'stopPublishing' })))
    const data = results.map(r => r.data)
    const genCpuMs = data.reduce((s, d) => s + d.cpuMs, 0)
    return {
      subs: data.slice(0, subWorkers.length),
      pubs: data.slice(subWorkers.length),
      ...(earlySubs !== undefined ? { earlySubs } : {}),
      brokerCpuPct: (cpu1 - cpu0) / (seconds * 10),
      genCpuPct: genCpuMs / (seconds * 10),
      seconds
    }
  } finally {
    await Promise.all(all.map(w => w.close()))
  }
}

/** The share of `groups` that worker `k` of `n` runs (client ids stay unique). */
function splitGroups (groups: GroupSpec[], k: number, n: number): GroupSpec[] {
  if (n === 1) return groups
  return groups.map(g => {
    const per = Math.floor(g.count / n) + (k < g.count % n ? 1 : 0)
    return { ...g, count: per, idPrefix: `${g.idPrefix}w${k}-` }
  }).filter(g => g.count > 0)
}

function throughput (name: string, description: string, plan: (ctx: ScenarioContext) => LoadPlan, needs: Partial<Scenario['needs']> = {}): Scenario {
  return {
    name,
    description,
    unit: 'msg/s',
    better: 'higher',
    needs: { persistence: false, ws: false, tls: false, ...needs },
    run: async ctx => {
      const r = await runLoad(ctx, plan(ctx), ctx.timing.measureMs)
      const received = r.subs.reduce((s, d) => s + d.received, 0)
      const sent = r.pubs.reduce((s, d) => s + d.sent, 0)
      const lost = [...r.subs, ...r.pubs].reduce((s, d) => s + d.lost, 0)
      return {
        value: received / r.seconds,
        // broker CPU per delivered message: less sensitive than msg/s to other load on a shared machine
        extra: { publishedPerSec: sent / r.seconds, connectionsLost: lost, brokerCpuUsPerMsg: received > 0 ? r.brokerCpuPct * r.seconds * 10_000 / received : NaN },
        brokerCpuPct: r.brokerCpuPct,
        genCpuPct: r.genCpuPct
      }
    }
  }
}

const sub = (filter: string, qos: 0 | 1 | 2, count = 1, extra: Partial<GroupSpec> = {}): GroupSpec =>
  ({ kind: 'sub', count, idPrefix: 'bench-sub-', clean: true, filter, qos, ...extra })
const pubs = (count: number, qos: 0 | 1 | 2, extra: Partial<GroupSpec> = {}): GroupSpec =>
  ({ kind: 'pub', count, idPrefix: 'bench-pub-', clean: true, topic: 'bench/in/{i}', qos, payloadBytes: 64, ...(qos === 0 ? { mode: 'paced' } : { mode: 'window', window: 10 }), ...extra })

const V5: Partial<GroupSpec> = { protocolVersion: 5 }

function fanIn (qos: 0 | 1, n: number): Scenario {
  return throughput(`fanin-q${qos}-p${n}`, `QoS ${qos} fan-in: ${n} publisher(s) -> one 'bench/in/#' subscriber`,
    () => ({ transport: 'tcp', subs: [sub('bench/in/#', qos)], pubs: [pubs(n, qos)] }))
}

function fanOut (qos: 0 | 1, n: number): Scenario {
  return throughput(`fanout-q${qos}-s${n}`, `QoS ${qos} fan-out: one publisher -> ${n} subscribers of 'bench/out'`,
    () => ({ transport: 'tcp', subs: [sub('bench/out', qos, n)], pubs: [pubs(1, qos, { topic: 'bench/out', ...(qos > 0 ? { window: 50 } : {}) })], subWorkers: n >= 200 ? 2 : 1 }))
}

function latency (qos: 0 | 1, rate: number): Scenario {
  return {
    name: `latency-q${qos}-${rate}`,
    description: `QoS ${qos} latency at ${rate} msg/s, one publisher -> one subscriber (p99 in the steady state; p50 and the first seconds' p99 in rows of their own)`,
    unit: 'ms p99',
    better: 'lower',
    needs: { persistence: false, ws: false, tls: false },
    derived: [
      { name: `latency-q${qos}-${rate}-p50`, description: `the median of latency-q${qos}-${rate}`, unit: 'ms p50', better: 'lower', extra: 'p50ms' },
      { name: `latency-q${qos}-${rate}-cold`, description: `latency-q${qos}-${rate} in the first seconds after start-up, while V8 still compiles`, unit: 'ms p99', better: 'lower', extra: 'coldP99ms' }
    ],
    run: async ctx => {
      const { latencyMs, latencyWarmMs, latencyColdAtMs } = ctx.timing
      const r = await runLoad(ctx, {
        transport: 'tcp',
        subs: [sub('bench/lat', qos, 1, { latency: true })],
        pubs: [pubs(1, qos, { topic: 'bench/lat', mode: 'rate', rate })]
      }, latencyMs, latencyWarmMs, { atMs: latencyColdAtMs, ms: latencyMs })
      const sorted = (c: Collected | undefined): number[] => (c?.latenciesUs ?? []).sort((a, b) => a - b)
      const lat = sorted(r.subs[0])
      const cold = sorted(r.earlySubs?.[0])
      const q = (xs: number[], p: number): number => xs.length === 0 ? NaN : xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! / 1000
      return {
        value: q(lat, 0.99),
        extra: { p50ms: q(lat, 0.5), p999ms: q(lat, 0.999), maxMs: lat.length ? lat[lat.length - 1]! / 1000 : NaN, samples: lat.length, coldP99ms: q(cold, 0.99), coldSamples: cold.length },
        brokerCpuPct: r.brokerCpuPct,
        genCpuPct: r.genCpuPct
      }
    }
  }
}

const idle: Scenario = {
  name: 'idle-connections',
  description: 'idle connections (keepalive 0): RSS per connection (connect time in extras)',
  unit: 'KiB/conn',
  better: 'lower',
  needs: { persistence: false, ws: false, tls: false },
  // the same connects, timed: every device returning at once after a broker restart
  derived: [
    { name: 'connect-storm', description: 'the time for the connects of idle-connections (200 in progress per worker, 2 workers)', unit: 'ms', better: 'lower', extra: 'connectMs' },
    // on a loaded machine the wall time follows the CPU share the broker gets; its own CPU time does not
    { name: 'connect-storm-cpu', description: 'the broker CPU time the connects of idle-connections took', unit: 'ms cpu', better: 'lower', extra: 'brokerCpuMsToConnect' }
  ],
  run: async ctx => {
    const n = ctx.timing.idleConnections
    const t = transportOf(ctx, 'tcp')
    const workers = [new Worker(), new Worker()]
    try {
      await sleep(300)
      const rss0 = rssKiBOf(ctx.broker.pid)
      const cpu0 = cpuMsOf(ctx.broker.pid)
      const t0 = process.hrtime.bigint()
      await Promise.all(workers.map((w, k) => w.request({
        cmd: 'setup',
        transport: t,
        connectConcurrency: 200,
        groups: [{ kind: 'idle', count: Math.floor(n / 2) + (k === 0 ? n % 2 : 0), idPrefix: `idle-${k}-`, clean: true }]
      })))
      const connectS = Number(process.hrtime.bigint() - t0) / 1e9
      const connectCpuMs = cpuMsOf(ctx.broker.pid) - cpu0
      assertAlive(ctx)
      await sleep(1000)
      const rss1 = rssKiBOf(ctx.broker.pid)
      return {
        value: (rss1 - rss0) / n,
        extra: { connections: n, connectMs: connectS * 1000, connectSeconds: connectS, connectsPerSec: n / connectS, rssBeforeKiB: rss0, rssAfterKiB: rss1, brokerCpuMsToConnect: connectCpuMs }
      }
    } finally {
      await Promise.all(workers.map(w => w.close()))
    }
  }
}

const retained: Scenario = {
  name: 'retained-delivery',
  description: "retained messages on distinct topics delivered to a new 'bench/retained/#' subscriber (time to the last)",
  unit: 'ms',
  better: 'lower',
  needs: { persistence: false, ws: false, tls: false },
  derived: [
    { name: 'retained-delivery-cpu', description: 'the broker CPU time of the delivery measured by retained-delivery', unit: 'ms cpu', better: 'lower', extra: 'brokerCpuMs' },
    { name: 'retained-publish', description: 'the time to publish the retained messages of retained-delivery (QoS 1, 100 in flight)', unit: 'ms', better: 'lower', extra: 'loadMs' }
  ],
  run: async ctx => {
    const n = ctx.timing.retained
    const t = transportOf(ctx, 'tcp')
    const w = new Worker()
    try {
      const load = await w.request<{ ok: true, cmd: 'retainedLoad', ms: number, acked: number }>({ cmd: 'retainedLoad', transport: t, count: n, payloadBytes: 64 })
      if (load.acked !== n) throw new Error(`the broker acknowledged ${load.acked} of ${n} QoS 1 retained publishes (100 in flight) within 60 s`)
      // the first fetch waits until the broker has stored every message; the second is the one measured
      const first = await w.request<{ ok: true, cmd: 'retainedFetch', ms: number, received: number }>({ cmd: 'retainedFetch', transport: t, count: n, timeoutMs: 30_000 })
      const cpu0 = cpuMsOf(ctx.broker.pid)
      const t0 = process.hrtime.bigint()
      const second = await w.request<{ ok: true, cmd: 'retainedFetch', ms: number, received: number }>({ cmd: 'retainedFetch', transport: t, count: n, timeoutMs: 30_000 })
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9
      const cpuMs = cpuMsOf(ctx.broker.pid) - cpu0
      assertAlive(ctx)
      return {
        value: second.ms,
        extra: { retained: n, received: second.received, firstFetchMs: first.ms, loadMs: load.ms, brokerCpuMs: cpuMs },
        brokerCpuPct: cpuMs / (seconds * 10)
      }
    } finally {
      await w.close()
    }
  }
}

export function allScenarios (): Scenario[] {
  const counts = [1, 5, 20, 50, 200]
  return [
    ...counts.map(n => fanIn(0, n)),
    ...counts.map(n => fanIn(1, n)),
    // the crash case: publishers write as fast as TCP lets them (as MQTT.js does), no pacing
    throughput('flood-q0-p20', "QoS 0 flood: 20 publishers writing as fast as TCP allows -> one 'bench/in/#' subscriber",
      () => ({ transport: 'tcp', subs: [sub('bench/in/#', 0)], pubs: [pubs(20, 0, { mode: 'flood' })] })),
    fanOut(0, 100),
    fanOut(0, 500),
    fanOut(1, 100),
    throughput('e2e-q2-p10', "QoS 2 end to end: 10 publishers (10 in flight each) -> one 'bench/in/#' QoS 2 subscriber",
      () => ({ transport: 'tcp', subs: [sub('bench/in/#', 2)], pubs: [pubs(10, 2)] })),
    latency(0, 1000),
    latency(1, 1000),
    idle,
    retained,
    // the same load in memory, so one run gives the cost of the store as a ratio (printed after the table)
    throughput('memory-q1-p10', 'QoS 1, persistence off, persistent sessions: 10 publishers -> one subscriber (twin of level-q1-p10)',
      () => ({
        transport: 'tcp',
        subs: [sub('bench/in/#', 1, 1, { clean: false, idPrefix: 'bench-dsub-' })],
        pubs: [pubs(10, 1, { clean: false, idPrefix: 'bench-dpub-' })]
      })),
    throughput('level-q1-p10', 'QoS 1, persistence on (LevelDB / mosquitto.db), persistent sessions: 10 publishers -> one subscriber',
      () => ({
        transport: 'tcp',
        subs: [sub('bench/in/#', 1, 1, { clean: false, idPrefix: 'bench-dsub-' })],
        pubs: [pubs(10, 1, { clean: false, idPrefix: 'bench-dpub-' })]
      }), { persistence: true }),
    // Midge's and aedes' durable store against mosquitto as installed (in memory, nothing written per message)
    throughput('durable-q1-p10', 'QoS 1, LevelDB for Midge and aedes, mosquitto in memory, persistent sessions: 10 publishers -> one subscriber',
      () => ({
        transport: 'tcp',
        subs: [sub('bench/in/#', 1, 1, { clean: false, idPrefix: 'bench-dsub-' })],
        pubs: [pubs(10, 1, { clean: false, idPrefix: 'bench-dpub-' })]
      }), { persistence: 'store' }),
    throughput('durable-q2-p10', 'QoS 2, LevelDB for Midge and aedes, mosquitto in memory, persistent sessions: 10 publishers -> one subscriber',
      () => ({
        transport: 'tcp',
        subs: [sub('bench/in/#', 2, 1, { clean: false, idPrefix: 'bench-dsub-' })],
        pubs: [pubs(10, 2, { clean: false, idPrefix: 'bench-dpub-' })]
      }), { persistence: 'store' }),
    throughput('ws-q0-p5', 'QoS 0 fan-in over WebSocket: 5 publishers -> one subscriber',
      () => ({ transport: 'ws', subs: [sub('bench/in/#', 0)], pubs: [pubs(5, 0)] }), { ws: true }),
    throughput('ws-q1-p10', 'QoS 1 fan-in over WebSocket: 10 publishers -> one subscriber',
      () => ({ transport: 'ws', subs: [sub('bench/in/#', 1)], pubs: [pubs(10, 1)] }), { ws: true }),
    throughput('tls-q0-p5', 'QoS 0 fan-in over TLS: 5 publishers -> one subscriber',
      () => ({ transport: 'tls', subs: [sub('bench/in/#', 0)], pubs: [pubs(5, 0)] }), { tls: true }),
    throughput('tls-q1-p10', 'QoS 1 fan-in over TLS: 10 publishers -> one subscriber',
      () => ({ transport: 'tls', subs: [sub('bench/in/#', 1)], pubs: [pubs(10, 1)] }), { tls: true }),
    // the same loads from MQTT 5 clients
    throughput('v5-fanin-q0-p5', "MQTT 5, QoS 0 fan-in: 5 publishers -> one 'bench/in/#' subscriber",
      () => ({ transport: 'tcp', subs: [sub('bench/in/#', 0, 1, V5)], pubs: [pubs(5, 0, V5)] })),
    throughput('v5-fanin-q1-p20', "MQTT 5, QoS 1 fan-in: 20 publishers -> one 'bench/in/#' subscriber",
      () => ({ transport: 'tcp', subs: [sub('bench/in/#', 1, 1, V5)], pubs: [pubs(20, 1, V5)] })),
    throughput('v5-fanout-q1-s100', "MQTT 5, QoS 1 fan-out: one publisher -> 100 subscribers of 'bench/out'",
      () => ({ transport: 'tcp', subs: [sub('bench/out', 1, 100, V5)], pubs: [pubs(1, 1, { topic: 'bench/out', window: 50, ...V5 })] })),
    throughput('v5-e2e-q2-p10', "MQTT 5, QoS 2 end to end: 10 publishers -> one 'bench/in/#' QoS 2 subscriber",
      () => ({ transport: 'tcp', subs: [sub('bench/in/#', 2, 1, V5)], pubs: [pubs(10, 2, V5)] }))
  ]
}
