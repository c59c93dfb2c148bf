/**
 * Starts the brokers under test as child processes on free loopback ports, and reads their CPU time and RSS
 * from /proc. Midge and mosquitto get the same mosquitto.conf text.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

export type BrokerName = 'midge' | 'aedes' | 'mosquitto'

export interface BrokerOptions {
  /** Persistence on (LevelDB for Midge and aedes, mosquitto's own file). */
  persistence: boolean
  ws: boolean
  tls?: { cert: string, key: string }
}

export interface RunningBroker {
  name: BrokerName
  pid: number
  ports: { tcp: number, ws?: number, tls?: number }
  /** Spawn until the TCP port accepts a connection, in ms. */
  startMs: number
  exited: () => { code: number | null, signal: string | null } | undefined
  stderrTail: () => string
  stop: () => Promise<void>
}

const HERE = dirname(fileURLToPath(import.meta.url))
/** The Midge under test: this build, or another one (MIDGE_BENCH_MAIN=/path/to/main.js) to compare two versions. */
export const MIDGE_MAIN = process.env.MIDGE_BENCH_MAIN ?? join(HERE, '..', 'main.js')
const BARE_AEDES = join(HERE, 'bare-aedes.js')
const CLK_TCK = 100

export function mosquittoVersion (): string | undefined {
  try {
    const out = execFileSync('mosquitto', ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return /mosquitto version (\S+)/.exec(out)?.[1]
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '')
    const m = /mosquitto version (\S+)/.exec(out)
    return m?.[1]
  }
}

export async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

async function waitForPort (port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('broker exited during start-up')
    const ok = await new Promise<boolean>(resolve => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`broker did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** The mosquitto.conf both Midge and mosquitto read. */
function confText (ports: RunningBroker['ports'], opts: BrokerOptions, dataDir: string): string {
  const lines = [
    'allow_anonymous true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    `persistence ${opts.persistence ? 'true' : 'false'}`,
    `persistence_location ${dataDir}/`,
    `listener ${ports.tcp} 127.0.0.1`
  ]
  if (ports.ws) lines.push(`listener ${ports.ws} 127.0.0.1`, 'protocol websockets')
  if (ports.tls && opts.tls) lines.push(`listener ${ports.tls} 127.0.0.1`, `certfile ${opts.tls.cert}`, `keyfile ${opts.tls.key}`)
  return lines.join('\n') + '\n'
}

export async function startBroker (name: BrokerName, opts: BrokerOptions): Promise<RunningBroker> {
  const dir = mkdtempSync(join(tmpdir(), `midge-bench-${name}-`))
  const dataDir = join(dir, 'data')
  mkdirSync(dataDir)
  const ports: RunningBroker['ports'] = { tcp: await freePort() }
  if (opts.ws) ports.ws = await freePort()
  if (opts.tls) ports.tls = await freePort()
  let cmd: string
  let args: string[]
  if (name === 'aedes') {
    cmd = process.execPath
    args = [BARE_AEDES, '--port', String(ports.tcp)]
    if (ports.ws) args.push('--ws-port', String(ports.ws))
    if (ports.tls && opts.tls) args.push('--tls-port', String(ports.tls), '--cert', opts.tls.cert, '--key', opts.tls.key)
    if (opts.persistence) args.push('--level', dataDir)
  } else {
    const conf = join(dir, 'bench.conf')
    // as root, mosquitto would switch to the `mosquitto` user and lose access to the temp dir; Midge ignores `user`
    const asRoot = name === 'mosquitto' && process.getuid?.() === 0 ? 'user root\n' : ''
    // MIDGE_BENCH_EXTRA_CONF: lines added to Midge's config only (experiments: "sys_interval 0", ...)
    const extra = name === 'midge' && process.env.MIDGE_BENCH_EXTRA_CONF ? process.env.MIDGE_BENCH_EXTRA_CONF.replace(/\\n/g, '\n') + '\n' : ''
    writeFileSync(conf, asRoot + extra + confText(ports, opts, dataDir))
    if (name === 'midge') {
      cmd = process.execPath
      args = [...(process.env.MIDGE_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), MIDGE_MAIN, '-c', conf]
    } else {
      cmd = 'mosquitto'
      args = ['-c', conf]
    }
  }
  const t0 = process.hrtime.bigint()
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
    if (process.env.MIDGE_BENCH_STDERR) process.stderr.write(`[${name}] ${d.toString()}`)
  })
  let exit: { code: number | null, signal: string | null } | undefined
  const exitedP = new Promise<void>(resolve => child.once('exit', (code, signal) => { exit = { code, signal }; resolve() }))
  try {
    await waitForPort(ports.tcp, child, 15_000)
    if (ports.ws) await waitForPort(ports.ws, child, 5_000)
    if (ports.tls) await waitForPort(ports.tls, child, 5_000)
  } catch (err) {
    child.kill('SIGKILL')
    await exitedP
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`${name}: ${(err as Error).message}: ${lastLines(stderr)}`)
  }
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6
  return {
    name,
    pid: child.pid!,
    ports,
    startMs,
    exited: () => exit,
    stderrTail: () => stderr,
    stop: async () => {
      if (!exit) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
        await exitedP
        clearTimeout(timer)
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The first error line of a broker's stderr and the lines after it (or its last lines), for one-line reports. */
export function lastLines (s: string, n = 3): string {
  const lines = s.trim().split('\n').filter(l => l.trim() !== '')
  const err = lines.findIndex(l => /RangeError|Error:|FATAL/.test(l))
  return (err >= 0 ? lines.slice(err, err + n) : lines.slice(-n)).join(' | ').slice(0, 400)
}

/** User + system CPU time of a process, in ms. */
export function cpuMsOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): utime is field 14, stime field 15
  return (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK
}

/** The machine's CPU time so far, in clock ticks: all of it, and what the hypervisor stole (`/proc/stat`). */
export function machineTicks (): { total: number, steal: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').slice(0, 200).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 }
  } catch {
    return undefined
  }
}

/** Share of the machine's CPU time stolen by the hypervisor between two `machineTicks()` readings, in %. */
export function stealPct (a: ReturnType<typeof machineTicks>, b: ReturnType<typeof machineTicks>): number | undefined {
  if (a === undefined || b === undefined || b.total <= a.total) return undefined
  return 100 * (b.steal - a.steal) / (b.total - a.total)
}

/** Resident set size of a process, in KiB. */
export function rssKiBOf (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

/** Throw-away self-signed certificate for localhost, made with openssl. */
export function makeCerts (dir: string): { cert: string, key: string, ca: string } {
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
  return { cert, key, ca: readFileSync(cert, 'utf8') }
}
