/**
 * Long-running child processes for tests: the built daemon (`node dist/main.js -c FILE`, build first with
 * `npm run build`) and Debian's mosquitto as the reference broker. A real process can be SIGKILLed and started again
 * on the same store. Ready = its "... running" log line; ports come from its "listen socket on port N" lines.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run, type RunResult } from './proc.js'

const ROOT = resolvePath(fileURLToPath(new URL('.', import.meta.url)), '../..')
export const MIDGE_MAIN = join(ROOT, 'dist/main.js')

/** The old name of Daemon, used by the persistence and cluster tests. */
export type MidgeProcess = Daemon

export type Exit = { code: number | null, signal: NodeJS.Signals | null }

export interface Daemon {
  proc: ChildProcess
  /** Bound port of each listener, in config order. */
  ports: number[]
  url (i?: number): string
  /** stderr + stdout so far. */
  output (): string
  /** Resolves when `re` matches output written after this call, or rejects after timeoutMs or at exit. */
  waitFor (re: RegExp, timeoutMs?: number): Promise<string>
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<Exit>
  /** Sends `signal` (SIGTERM by default) unless it has exited, then waits for the exit. */
  kill (signal?: NodeJS.Signals): Promise<Exit>
  stop (): Promise<void>
}

function daemon (proc: ChildProcess, ready: RegExp, portRe: RegExp, timeoutMs: number): Promise<Daemon> {
  let out = ''
  const listeners = new Set<() => void>()
  const onData = (d: string): void => { out += d; for (const l of listeners) l() }
  proc.stdout!.setEncoding('utf8').on('data', onData)
  proc.stderr!.setEncoding('utf8').on('data', onData)
  const exited = new Promise<Exit>(resolve => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const waitFor = (re: RegExp, ms = timeoutMs, from = 0): Promise<string> => new Promise((resolve, reject) => {
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
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    return exited
  }
  return waitFor(ready).then(() => {
    const ports = [...out.matchAll(portRe)].map(m => Number(m[1]))
    return {
      proc,
      ports,
      url: (i = 0) => `mqtt://127.0.0.1:${ports[i]}`,
      output: () => out,
      waitFor: (re: RegExp, ms?: number) => waitFor(re, ms, out.length),
      exited,
      kill,
      stop: async () => { await kill('SIGTERM') }
    }
  }, err => { proc.kill('SIGKILL'); throw err })
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

/** Starts Midge on `confPath` (in `cwd`) and waits until it logs that it runs. Rejects, with its output, if it exits first. */
export function spawnMidge (confPath: string, cwd?: string, timeoutMs = 20_000): Promise<Daemon> {
  const proc = spawn(process.execPath, [mainOrThrow(), '-c', confPath], {
    cwd,
    env: { ...process.env, MIDGE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return daemon(proc, /Midge version \S+ running/, /Opening \w+ listen socket on port (\d+)\./g, timeoutMs)
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

/** A port that was free a moment ago (for mosquitto, which cannot report an ephemeral port). */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', () => resolve()))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}
