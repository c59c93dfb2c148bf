/**
 * `npm run bench`: runs every scenario against Midge (built), bare aedes and mosquitto (when installed), in
 * alternating order, prints the medians and the Midge/mosquitto ratio, and writes everything as JSON to
 * bench-results/<timestamp>.json.
 *
 *   npm run bench -- [--quick] [--runs N] [--scenario NAME[,NAME]] [--brokers midge,aedes,mosquitto] [--store] [--out FILE]
 *   (--store: Midge and bare aedes on LevelDB in every scenario, mosquitto in memory as installed)
 *   npm run bench -- --cluster | --bridge   (only the Redis cluster or the bridge comparison; a full run ends with both)
 */
import { parseArgs } from 'node:util'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { mkdirSync, mkdtempSync, writeFileSync, existsSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir, cpus, loadavg, totalmem } from 'node:os'
import { join, dirname } from 'node:path'
import { startBroker, mosquittoVersion, makeCerts, rssKiBOf, machineTicks, stealPct, lastLines, MIDGE_MAIN, type BrokerName } from './brokers.js'
import { allScenarios, FULL, QUICK, type Measurement, type Scenario, type Timing } from './scenarios.js'

interface RunRecord {
  broker: BrokerName
  run: number
  ok: boolean
  error?: string
  startMs?: number
  rssStartKiB?: number
  /** CPU time the hypervisor took from this (virtual) machine during the run, in % of all its CPU time. */
  stealPct?: number
  /** The machine's 1-minute load average when the run started (other work on a shared machine shows here). */
  load1?: number
  m?: Measurement
}

interface ScenarioResult {
  name: string
  description: string
  unit: string
  better: 'higher' | 'lower'
  runs: RunRecord[]
  median: Partial<Record<BrokerName, number>>
  /** (max - min) / median of the primary metric, per broker. */
  spread: Partial<Record<BrokerName, number>>
  brokerCpuPct: Partial<Record<BrokerName, number>>
  genCpuPct: Partial<Record<BrokerName, number>>
  /** Broker CPU time per delivered message (throughput scenarios), microseconds. */
  cpuUsPerMsg: Partial<Record<BrokerName, number>>
  failures: Partial<Record<BrokerName, number>>
  /** CPU steal over all runs of the scenario: median and highest, in %. */
  steal?: { median: number, max: number }
  /** 1-minute load average at the start of the runs: median and highest. */
  load?: { median: number, max: number }
}

function parseOptions () {
  try {
    return parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        runs: { type: 'string' },
        scenario: { type: 'string' },
        brokers: { type: 'string' },
        out: { type: 'string' },
        list: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        cluster: { type: 'boolean', default: false },
        bridge: { type: 'boolean', default: false },
        // Midge and bare aedes on LevelDB in every scenario, as config/midge.conf ships; mosquitto as installed (in memory)
        store: { type: 'boolean', default: false }
      }
    })
  } catch (err) {
    // a mistyped option: one line, not a stack trace
    process.stderr.write(`bench: ${(err as Error).message} (npm run bench -- --help)\n`)
    process.exit(2)
  }
}
const { values } = parseOptions()

if ((values.cluster || values.bridge) && values.scenario === undefined) {
  const n = values.runs !== undefined ? Number(values.runs) : (values.quick ? 1 : 3)
  if (values.cluster) runClusterBench(n)
  if (values.bridge) runBridgeBench(n)
  process.exit(0)
}

if (values.help) {
  process.stdout.write([
    'usage: npm run bench -- [--quick] [--runs N] [--scenario NAME[,NAME]] [--brokers midge,aedes,mosquitto] [--store] [--out FILE]',
    '       npm run bench -- --list | --cluster | --bridge',
    'docs/performance.md explains the scenarios, the columns and the environment variables.',
    ''
  ].join('\n'))
  process.exit(0)
}

const scenarios = allScenarios()
if (values.list) {
  for (const s of scenarios) {
    process.stdout.write(`${s.name.padEnd(20)} ${s.description}\n`)
    for (const d of s.derived ?? []) process.stdout.write(`${d.name.padEnd(20)} ${d.description}\n`)
  }
  process.exit(0)
}
const wanted = values.scenario?.split(',').map(s => s.trim()).filter(Boolean)
// a name selects that scenario; a name ending with '*' selects every scenario starting with it; a derived row's
// name selects the scenario that measures it
const nameMatches = (w: string, name: string): boolean => w.endsWith('*') ? name.startsWith(w.slice(0, -1)) : name === w
const selected = wanted ? scenarios.filter(s => wanted.some(w => [s.name, ...(s.derived ?? []).map(d => d.name)].some(n => nameMatches(w, n)))) : scenarios
if (selected.length === 0) {
  process.stderr.write(`Error: no scenario matches ${values.scenario ?? ''}; --list shows them.\n`)
  process.exit(2)
}
if (!existsSync(MIDGE_MAIN)) {
  process.stderr.write(`Error: ${MIDGE_MAIN} is missing: run "npm run build" first.\n`)
  process.exit(2)
}

const mosqVersion = mosquittoVersion()
let brokers: BrokerName[] = (values.brokers?.split(',').map(s => s.trim()) as BrokerName[] | undefined) ?? ['midge', 'aedes', 'mosquitto']
if (!mosqVersion && brokers.includes('mosquitto')) {
  process.stderr.write('mosquitto is not installed: measuring Midge and bare aedes only (Debian: apt-get install mosquitto).\n')
  brokers = brokers.filter(b => b !== 'mosquitto')
}
const timing: Timing = values.quick ? QUICK : FULL
const runs = Number(values.runs ?? (values.quick ? 1 : 3))

const certDir = mkdtempSync(join(tmpdir(), 'midge-bench-certs-'))
const needsTls = selected.some(s => s.needs.tls)
const certs = needsTls ? makeCerts(certDir) : undefined

const median = (xs: number[]): number => {
  const s = xs.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

async function runOne (s: Scenario, name: BrokerName, run: number): Promise<RunRecord> {
  let broker
  try {
    const need = values.store && s.needs.persistence === false ? 'store' : s.needs.persistence
    const persistence = need === 'store' ? name !== 'mosquitto' : need
    broker = await startBroker(name, { persistence, ws: s.needs.ws, tls: s.needs.tls ? certs : undefined })
  } catch (err) {
    return { broker: name, run, ok: false, error: (err as Error).message }
  }
  const rssStartKiB = rssKiBOf(broker.pid)
  const ticks0 = machineTicks()
  const load1 = loadavg()[0]
  try {
    // every scenario is bounded in time, whatever the broker does
    let timer: NodeJS.Timeout | undefined
    const limitMs = 180_000
    const m = await Promise.race([
      s.run({ broker, timing, ca: certs?.ca }),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no result within ${limitMs / 1000} s`)), limitMs) })
    ]).finally(() => clearTimeout(timer))
    return { broker: name, run, ok: true, startMs: broker.startMs, rssStartKiB, stealPct: stealPct(ticks0, machineTicks()), load1, m }
  } catch (err) {
    const e = broker.exited()
    const msg = e ? `${(err as Error).message}` : (err as Error).message
    return { broker: name, run, ok: false, startMs: broker.startMs, rssStartKiB, error: e ? msg : `${msg}${broker.stderrTail() ? ` [stderr: ${lastLines(broker.stderrTail())}]` : ''}` }
  } finally {
    await broker.stop()
  }
}

function fmt (x: number | undefined, unit = ''): string {
  if (x === undefined || !Number.isFinite(x)) return '-'
  if (unit === 'msg/s') return x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0)
  if (Math.abs(x) >= 100) return x.toFixed(0)
  if (Math.abs(x) >= 10) return x.toFixed(1)
  return x.toFixed(2)
}

const pad = (s: string, n: number): string => s.length >= n ? s : s + ' '.repeat(n - s.length)
const padL = (s: string, n: number): string => s.length >= n ? s : ' '.repeat(n - s.length) + s

/** A derived row as a scenario of its own: the same runs, with the extra figure as the primary one. */
function derivedOf (s: Scenario, d: NonNullable<Scenario['derived']>[number], records: RunRecord[]): { s: Scenario, records: RunRecord[] } {
  return {
    s: { ...s, name: d.name, description: d.description, unit: d.unit, better: d.better, derived: undefined },
    records: records.map(r => r.m ? { ...r, m: { ...r.m, value: r.m.extra[d.extra] ?? NaN, extra: {}, brokerCpuPct: undefined, genCpuPct: undefined } } : r)
  }
}

function summarise (s: Scenario, records: RunRecord[]): ScenarioResult {
  const r: ScenarioResult = { name: s.name, description: s.description, unit: s.unit, better: s.better, runs: records, median: {}, spread: {}, brokerCpuPct: {}, genCpuPct: {}, cpuUsPerMsg: {}, failures: {} }
  for (const b of brokers) {
    const mine = records.filter(x => x.broker === b)
    const ok = mine.filter(x => x.ok && x.m)
    r.failures[b] = mine.length - ok.length
    if (ok.length === 0) continue
    const vals = ok.map(x => x.m!.value)
    const med = median(vals)
    r.median[b] = med
    r.spread[b] = ok.length > 1 ? (Math.max(...vals) - Math.min(...vals)) / med : 0
    r.brokerCpuPct[b] = median(ok.map(x => x.m!.brokerCpuPct ?? NaN))
    r.genCpuPct[b] = median(ok.map(x => x.m!.genCpuPct ?? NaN))
    r.cpuUsPerMsg[b] = median(ok.map(x => x.m!.extra.brokerCpuUsPerMsg ?? NaN))
  }
  const steals = records.map(x => x.stealPct).filter((x): x is number => x !== undefined)
  if (steals.length > 0) r.steal = { median: median(steals), max: Math.max(...steals) }
  const loads = records.map(x => x.load1).filter((x): x is number => x !== undefined)
  if (loads.length > 0) r.load = { median: median(loads), max: Math.max(...loads) }
  return r
}

function printRow (r: ScenarioResult): void {
  const cell = (b: BrokerName): string => {
    if (!brokers.includes(b)) return 'n/a'
    const v = r.median[b]
    const f = r.failures[b] ?? 0
    if (v === undefined) return f > 0 ? 'FAILED' : '-'
    return fmt(v, r.unit) + (f > 0 ? `(${f}x!)` : '')
  }
  const ratio = (a?: number, b?: number): string => a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}x` : '-'
  const cpu = (b: BrokerName): string => {
    const c = r.brokerCpuPct[b]
    const g = r.genCpuPct[b]
    return `${fmt(c)}/${fmt(g)}`
  }
  const us = (b: BrokerName): string => fmt(r.cpuUsPerMsg[b])
  process.stdout.write([
    pad(r.name, 20), pad(r.unit, 9),
    padL(cell('midge'), 10), padL(cell('aedes'), 10), padL(cell('mosquitto'), 10),
    padL(ratio(r.median.midge, r.median.mosquitto), 8), padL(ratio(r.median.midge, r.median.aedes), 8),
    padL(`±${fmt(100 * (r.spread.midge ?? NaN))}%`, 7),
    padL(r.steal ? `${r.steal.median.toFixed(0)}/${r.steal.max.toFixed(0)}` : '-', 6),
    '  ' + brokers.map(b => pad(cpu(b), 10)).join(' '),
    ' ' + brokers.map(b => padL(us(b), 6)).join(' '),
    padL(r.load ? `${r.load.median.toFixed(1)}/${r.load.max.toFixed(1)}` : '-', 9)
  ].join(' ') + '\n')
}

function header (): void {
  process.stdout.write([
    pad('scenario', 20), pad('unit', 9), padL('midge', 10), padL('aedes', 10), padL('mosquitto', 10),
    padL('m/mosq', 8), padL('m/aedes', 8), padL('spread', 7), padL('steal%', 6),
    '  ' + brokers.map(b => pad(`cpu% ${b.slice(0, 5)}`, 10)).join(' '),
    ' ' + brokers.map(b => padL(`us ${b.slice(0, 3)}`, 6)).join(' '),
    padL('load', 9)
  ].join(' ') + '\n')
  process.stdout.write('(medians; m/mosq and m/aedes are Midge divided by the other broker; spread is (max-min)/median of Midge runs;\n cpu% is broker/generator CPU in % of one core over the measured window; us/m is broker CPU microseconds per delivered message;\n steal% is the CPU time the hypervisor took from this virtual machine during the runs, median/highest: above a few %, processes\n stall for tens to hundreds of ms at a time and the figures, latency above all, say more about the machine than the brokers;\n load is the 1-minute load average as the runs started, median/highest)\n')
}

/** Runs with more CPU steal than this are flagged after the table. */
const STEAL_WARN_PCT = 5
const startedAt = new Date()
process.stdout.write(`midge bench: ${selected.length} scenario(s) x ${brokers.join(', ')} x ${runs} run(s), ${values.quick ? 'quick' : 'full'} timing${values.store ? ', Midge/aedes on LevelDB (--store)' : ''}; node ${process.version}; mosquitto ${mosqVersion ?? 'not installed'}; ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}; load ${loadavg().map(x => x.toFixed(2)).join(' ')}\n`)
const results: ScenarioResult[] = []
try {
  let headerShown = false
  for (const s of selected) {
    const records: RunRecord[] = []
    for (let run = 0; run < runs; run++) {
      // alternate the order so that drift in the machine's load does not favour one broker
      const order = run % 2 === 0 ? brokers : [...brokers].reverse()
      for (const b of order) {
        const rec = await runOne(s, b, run)
        records.push(rec)
        if (!rec.ok) process.stderr.write(`  ${s.name} ${b} run ${run + 1}: ${rec.error ?? 'failed'}\n`)
      }
    }
    const r = summarise(s, records)
    results.push(r)
    if (!headerShown) { header(); headerShown = true }
    printRow(r)
    for (const d of s.derived ?? []) {
      const x = derivedOf(s, d, records)
      const dr = summarise(x.s, x.records)
      results.push(dr)
      printRow(dr)
    }
  }
} finally {
  rmSync(certDir, { recursive: true, force: true })
}

// the cost of the store, from the twin scenarios run above
const mem = results.find(r => r.name === 'memory-q1-p10')
const lvl = results.find(r => r.name === 'level-q1-p10')
if (mem && lvl) {
  const q = (a?: number, b?: number): string => a !== undefined && b !== undefined && b > 0 ? `${(a / b).toFixed(2)}x` : '-'
  process.stdout.write('\nQoS 1 with persistence on vs off (level-q1-p10 / memory-q1-p10), per broker:\n')
  for (const b of brokers) process.stdout.write(`  ${pad(b, 10)} ${q(lvl.median[b], mem.median[b])}\n`)
  process.stdout.write(`  Midge with LevelDB / mosquitto with persistence: ${q(lvl.median.midge, lvl.median.mosquitto)}\n`)
}

// start-up time and idle RSS of every broker, from every run of every scenario
const starts: Partial<Record<BrokerName, { startMs: number, rssStartKiB: number }>> = {}
for (const b of brokers) {
  const recs = results.flatMap(r => r.runs).filter(x => x.broker === b && x.startMs !== undefined)
  if (recs.length) starts[b] = { startMs: median(recs.map(x => x.startMs!)), rssStartKiB: median(recs.map(x => x.rssStartKiB!)) }
}
process.stdout.write('\nstart-up (spawn until the port accepts) and RSS right after start, medians over all runs:\n')
for (const b of brokers) {
  const s = starts[b]
  if (s) process.stdout.write(`  ${pad(b, 10)} ${fmt(s.startMs)} ms  ${fmt(s.rssStartKiB / 1024)} MiB\n`)
}

const allSteals = results.flatMap(r => r.runs).map(x => x.stealPct).filter((x): x is number => x !== undefined)
const stolen = allSteals.filter(x => x > STEAL_WARN_PCT).length
if (allSteals.length > 0) {
  process.stdout.write(`\nCPU steal (hypervisor) per run: median ${median(allSteals).toFixed(1)}%, highest ${Math.max(...allSteals).toFixed(1)}%` +
    (stolen > 0 ? `; ${stolen} of ${allSteals.length} runs above ${STEAL_WARN_PCT}%: compare those with care, or run again on a quieter machine\n` : '\n'))
}

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
mkdirSync('bench-results', { recursive: true })
const out = values.out ?? join('bench-results', `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(out, JSON.stringify({
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, totalMemMiB: Math.round(totalmem() / 2 ** 20), loadavgAtEnd: loadavg() },
  versions: { node: process.version, midge: version, mosquitto: mosqVersion },
  timing,
  runs,
  brokers,
  startup: starts,
  results
}, null, 2) + '\n')
process.stdout.write(`\nwrote ${out}\n`)

// 1 node vs 2 nodes on Redis, and bridges against mosquitto's own, after a full run of every scenario
if (values.cluster || (values.scenario === undefined && !values.quick)) runClusterBench(runs)
if (values.bridge || (values.scenario === undefined && !values.quick)) runBridgeBench(runs)

/** Midge's bridge against mosquitto's own (dist/bench/bridge.js). `--bridge` runs only this. */
function runBridgeBench (n: number): void {
  if (!mosquittoVersion()) {
    process.stdout.write('\nmosquitto is not installed: skipping the bridge comparison (Debian: apt-get install mosquitto).\n')
    return
  }
  process.stdout.write('\nBridges, Midge against mosquitto (dist/bench/bridge.js):\n')
  const r = spawnSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'bridge.js'), '--runs', String(n)], { stdio: 'inherit' })
  if (r.status !== 0) process.stderr.write(`bridge bench failed (exit ${r.status ?? r.signal})\n`)
}

/**
 * 1 node vs 2 nodes on Redis: dist/bench/cluster.js with Debian's redis-server. `--cluster` runs only this;
 * a full run of every scenario ends with it.
 */
function runClusterBench (n: number): void {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    process.stdout.write('\nredis-server is not installed: skipping 1 node vs 2 nodes on Redis (Debian: apt-get install redis-server).\n')
    return
  }
  process.stdout.write('\n1 node vs 2 nodes on Redis (dist/bench/cluster.js):\n')
  const r = spawnSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'cluster.js'), '--runs', String(n)], { stdio: 'inherit' })
  if (r.status !== 0) process.stderr.write(`cluster bench failed (exit ${r.status ?? r.signal})\n`)
}
