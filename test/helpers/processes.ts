/**
 * Every child process the tests start, on one core (`watch`): the built daemon (`node dist/main.js`, build first
 * with `npm run build`), the same daemon with the test probe preloaded (broker-probe.mjs: memory after GC,
 * event-loop delay and uncaught exceptions over IPC, for the hardening tests), Debian's mosquitto as the reference
 * broker, and one-shot commands (`run`, `midge`). A real process can be SIGKILLed and started again on the same
 * store. Ready = its "... running" log line; ports come from its "listen socket on port N" lines.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = resolvePath(fileURLToPath(new URL('.', import.meta.url)), '../..')
/** The daemon to run; MIDGE_CHILD_MAIN points the tests at another build (e.g. to show a regression). */
export const MIDGE_MAIN = process.env.MIDGE_CHILD_MAIN ?? join(ROOT, 'dist/main.js')
const PROBE = pathToFileURL(join(ROOT, 'test/helpers/broker-probe.mjs')).href
/** Debian's python3 (with python3-paho-mqtt), not a pyenv shim. */
export const PYTHON = '/usr/bin/python3'

const MIDGE_READY = /Midge version \S+ running/
const MIDGE_PORT = /Opening \w+ listen socket on port (\d+)\./g
/** Midge children log JSON lines so that tests can parse them. */
const MIDGE_ENV = { ...process.env, MIDGE_LOG_FORMAT: 'json' }

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

// ------------------------------------------------------------------------------------------- the core

/** A running child whose output is kept and can be waited on. */
export interface Watched {
  proc: ChildProcess
  /** stderr + stdout so far. */
  output (): string
  /** stdout alone so far. */
  stdout (): string
  /** stderr alone so far. */
  stderr (): string
  /** Resolves when `re` matches output after offset `from`, or rejects after timeoutMs or at exit. */
  waitFor (re: RegExp, timeoutMs: number, from?: number): Promise<string>
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<Exit>
  /** True while the process runs. */
  alive (): boolean
  /** Sends `signal` (SIGTERM by default) unless it has exited, then waits for the exit. */
  kill (signal?: NodeJS.Signals): Promise<Exit>
}

export function watch (proc: ChildProcess): Watched {
  let out = ''
  let std = ''
  let err = ''
  let running = true
  const listeners = new Set<() => void>()
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d; std += d; for (const l of listeners) l() })
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { out += d; err += d; for (const l of listeners) l() })
  const exited = new Promise<Exit>(resolve => proc.once('exit', (code, signal) => { running = false; resolve({ code, signal }) }))
  const waitFor = (re: RegExp, ms: number, from = 0): Promise<string> => new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = re.exec(out.slice(from))
      if (m) { cleanup(); resolve(m[0]); return true }
      return false
    }
    const t = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${re}:\n${out}`)) }, ms)
    const onExit = (): void => { if (!check()) { cleanup(); reject(new Error(`process exited while waiting for ${re}:\n${out}`)) } }
    const cleanup = (): void => { clearTimeout(t); listeners.delete(check); proc.off('exit', onExit) }
    listeners.add(check)
    proc.once('exit', onExit)
    check()
  })
  return {
    proc,
    output: () => out,
    stdout: () => std,
    stderr: () => err,
    waitFor,
    exited,
    alive: () => running,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    }
  }
}

/** Runs a command to completion (with a hard timeout), capturing output; `input` goes to stdin. */
export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

export function run (cmd: string, args: string[], opts: SpawnOptions & { input?: string, timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: MIDGE_ENV, ...opts, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''; let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
    child.on('error', err => { clearTimeout(t); reject(err) })
    child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }) })
    child.stdin!.on('error', () => {}) // a command that exits without reading stdin: EPIPE is not a test failure
    child.stdin!.end(opts.input ?? '')
  })
}

/** A port that was free a moment ago (for mosquitto and redis-server, which cannot report an ephemeral port). */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', () => resolve()))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

/** Writes `conf` (with `{dir}` replaced) to `<dir>/<name>` and returns its path. */
export async function writeConf (dir: string, conf: string, name = 'midge.conf'): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, conf.replaceAll('{dir}', dir))
  return path
}

function mainOrThrow (): string {
  if (!existsSync(MIDGE_MAIN)) throw new Error(`${MIDGE_MAIN} is missing: run \`npm run build\` first`)
  return MIDGE_MAIN
}

// ------------------------------------------------------------------------------------------- daemons

export interface Daemon {
  proc: ChildProcess
  /** Bound port of each listener, in config order. */
  ports: number[]
  url (i?: number): string
  /** stderr + stdout so far. */
  output (): string
  /** Resolves when `re` matches output written after this call, or rejects after timeoutMs or at exit. */
  waitFor (re: RegExp, timeoutMs?: number): Promise<string>
  /** Resolves when `re` matches any output, earlier or later, or rejects after timeoutMs or at exit. */
  logged (re: RegExp, timeoutMs?: number): Promise<string>
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<Exit>
  /** Sends `signal` (SIGTERM by default) unless it has exited, then waits for the exit. */
  kill (signal?: NodeJS.Signals): Promise<Exit>
  stop (): Promise<void>
}

/** The name the persistence and cluster tests use. */
export type MidgeProcess = Daemon

async function daemon (proc: ChildProcess, ready: RegExp, portRe: RegExp, timeoutMs: number): Promise<Daemon> {
  const w = watch(proc)
  try {
    await w.waitFor(ready, timeoutMs)
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  const ports = [...w.output().matchAll(portRe)].map(m => Number(m[1]))
  return {
    proc,
    ports,
    url: (i = 0) => `mqtt://127.0.0.1:${ports[i]}`,
    output: w.output,
    waitFor: (re: RegExp, ms = timeoutMs) => w.waitFor(re, ms, w.output().length),
    logged: (re: RegExp, ms = timeoutMs) => w.waitFor(re, ms, 0),
    exited: w.exited,
    kill: w.kill,
    stop: async () => { await w.kill('SIGTERM') }
  }
}

/** Starts `midge ARGS` (in `cwd`) and waits until it logs that it runs. Rejects, with its output, if it exits first. */
export function spawnMidgeWith (args: string[], cwd?: string, timeoutMs = 20_000): Promise<Daemon> {
  const proc = spawn(process.execPath, [mainOrThrow(), ...args], { cwd, env: MIDGE_ENV, stdio: ['ignore', 'pipe', 'pipe'] })
  return daemon(proc, MIDGE_READY, MIDGE_PORT, timeoutMs)
}

/** Starts Midge on `confPath` (in `cwd`) and waits until it logs that it runs. Rejects, with its output, if it exits first. */
export function spawnMidge (confPath: string, cwd?: string, timeoutMs = 20_000): Promise<Daemon> {
  return spawnMidgeWith(['-c', confPath], cwd, timeoutMs)
}

/** Debian's mosquitto on `conf` (which must log to stderr), ready once it logs "running". */
export function spawnMosquitto (confPath: string, timeoutMs = 10_000): Promise<Daemon> {
  const proc = spawn('mosquitto', ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] })
  return daemon(proc, /mosquitto version \S+ running/, /Opening ipv4 listen socket on port (\d+)\./g, timeoutMs)
}

/** Runs `midge ARGS` to completion (subcommands, start-up failures). */
export function midge (args: string[], opts: { input?: string, cwd?: string, timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [mainOrThrow(), ...args], { timeoutMs: 20_000, ...opts })
}

/** `midge ARGS` with stdout and stderr as one string (what a person sees in a terminal). */
export async function runMidge (args: string[], cwd: string, timeoutMs = 20_000): Promise<{ code: number | null, output: string }> {
  const r = await midge(args, { cwd, timeoutMs })
  return { code: r.code, output: r.stdout + r.stderr }
}

// ------------------------------------------------------------------------------------------- probed daemon

export interface ProbeStats {
  rss: number
  heapUsed: number
  external: number
  arrayBuffers: number
  delayMeanMs: number
  delayP99Ms: number
  delayMaxMs: number
}

/** The daemon with broker-probe.mjs preloaded: the hardening tests measure its memory and count its crashes. */
export interface ChildBroker {
  proc: ChildProcess
  dir: string
  /** Bound port of each listener, in config order. */
  ports: number[]
  /** Everything the broker wrote to stderr so far. */
  stderr (): string
  /** Uncaught exceptions / unhandled rejections the probe saw. */
  readonly uncaught: string[]
  /** Memory (after two forced GCs when `gc`) and event-loop delay since the last `resetDelay`. */
  stats (opts?: { gc?: boolean, resetDelay?: boolean }): Promise<ProbeStats>
  /** True while the process runs. */
  alive (): boolean
  /** SIGTERM (SIGKILL after 10 s), wait for exit; resolves with the exit code and signal. */
  close (): Promise<Exit>
}

/** Lines the child wrote to stderr that show a crash or an unhandled error (JSON log lines of level >= 50 included). */
export function crashLines (stderr: string): string[] {
  return stderr.split('\n').filter(l =>
    /Uncaught|UnhandledPromiseRejection|RangeError|TypeError|ReferenceError|Maximum call stack|FATAL ERROR|node:internal/.test(l) ||
    /"level":(5|6)0/.test(l))
}

/** How long a stats request may take (two forced GCs of a loaded broker). */
const STATS_TIMEOUT_MS = 30_000
/** How long close() waits after SIGTERM before SIGKILL. */
const CLOSE_GRACE_MS = 10_000

/**
 * Runs `confText` (`{dir}` replaced by a fresh temp dir, removed by close()) in the probed daemon.
 * MIDGE_CHILD_NODE_ARGS adds node flags (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a run).
 */
export async function startChildBroker (confText: string, opts: { nodeArgs?: string[], startTimeoutMs?: number } = {}): Promise<ChildBroker> {
  const main = mainOrThrow()
  const dir = await mkdtemp(join(tmpdir(), 'midge-child-'))
  const confPath = await writeConf(dir, confText)
  const nodeArgs = [...(opts.nodeArgs ?? []), ...(process.env.MIDGE_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? [])]
  const proc = spawn(process.execPath, ['--expose-gc', '--import', PROBE, ...nodeArgs, main, '-c', confPath], {
    cwd: dir,
    env: MIDGE_ENV,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  const w = watch(proc)
  const uncaught: string[] = []
  const pending = new Map<number, (s: ProbeStats) => void>()
  let nextId = 1
  proc.on('message', (m: { type: string, id?: number, message?: string } & ProbeStats) => {
    if (m.type === 'uncaught') uncaught.push(m.message ?? '')
    if (m.type === 'stats' && m.id !== undefined) { pending.get(m.id)?.(m); pending.delete(m.id) }
  })
  try {
    await w.waitFor(MIDGE_READY, opts.startTimeoutMs ?? 15_000)
  } catch (err) {
    proc.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
    throw new Error(`child broker did not start: ${(err as Error).message}`)
  }
  const ports = [...w.stderr().matchAll(MIDGE_PORT)].map(m => Number(m[1]))
  return {
    proc,
    dir,
    ports,
    uncaught,
    stderr: w.stderr,
    alive: w.alive,
    stats: ({ gc = true, resetDelay = false } = {}) => new Promise<ProbeStats>((resolve, reject) => {
      if (!w.alive()) { reject(new Error(`child broker is not running:\n${w.stderr().slice(-4000)}`)); return }
      const id = nextId++
      const t = setTimeout(() => { pending.delete(id); reject(new Error(`child broker did not answer a stats request in ${STATS_TIMEOUT_MS / 1000} s`)) }, STATS_TIMEOUT_MS)
      pending.set(id, s => { clearTimeout(t); resolve(s) })
      proc.send({ type: 'stats', id, gc, resetDelay })
    }),
    close: async () => {
      if (w.alive()) {
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), CLOSE_GRACE_MS)
        await w.exited
        clearTimeout(t)
      }
      const exit = await w.exited
      await rm(dir, { recursive: true, force: true })
      return exit
    }
  }
}

/** mosquitto_sub for `count` messages; `ready` resolves once its SUBACK arrived (its -d output). */
export function mosquittoSub (args: string[], count = 1): { ready: Promise<void>, done: Promise<RunResult> } {
  // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, and the SUBACK line is the readiness signal
  const w = watch(spawn('stdbuf', ['-oL', 'mosquitto_sub', '-d', '-C', String(count), '-W', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }))
  // -W 10: mosquitto_sub gives up after 10 s, so it exits (and `ready` rejects) before this timeout
  const ready = w.waitFor(/received SUBACK/, 15_000).then(() => {})
  // 'close', not 'exit': the output is complete only once the pipes are
  const done = new Promise<RunResult>(resolve => w.proc.on('close', (code, signal) => resolve({ code, signal, stdout: w.stdout(), stderr: w.stderr() })))
  return { ready, done }
}

/** The message lines of mosquitto_sub -d output, without its debug lines. */
export const messageLines = (s: string): string[] => s.trim().split('\n').filter(l => !l.startsWith('Client ') && !l.startsWith('Subscribed (mid') && l !== '')
