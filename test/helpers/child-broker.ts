/**
 * Runs the built daemon as a child process (`node dist/main.js -c FILE`), as a user would, with a test-only probe
 * preloaded (broker-probe.mjs) that reports memory after GC, event-loop delay and uncaught exceptions over IPC.
 * MIDGE_CHILD_NODE_ARGS adds node flags (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a run).
 * Used by the hardening tests, where the broker's own memory and crashes are what is measured.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { pathToFileURL, fileURLToPath } from 'node:url'
import { once } from 'node:events'

const ROOT = resolvePath(fileURLToPath(new URL('.', import.meta.url)), '../..')
/** The daemon to run; MIDGE_CHILD_MAIN points the hardening tests at another build (e.g. to show a regression). */
export const DIST_MAIN = process.env.MIDGE_CHILD_MAIN ?? join(ROOT, 'dist/main.js')
const PROBE = pathToFileURL(join(ROOT, 'test/helpers/broker-probe.mjs')).href

export interface ProbeStats {
  rss: number
  heapUsed: number
  external: number
  arrayBuffers: number
  delayMeanMs: number
  delayP99Ms: number
  delayMaxMs: number
}

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
  /** SIGTERM, wait for exit; resolves with the exit code and signal. */
  close (): Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Lines the child wrote to stderr that show a crash or an unhandled error (JSON log lines of level >= 50 included). */
export function crashLines (stderr: string): string[] {
  return stderr.split('\n').filter(l =>
    /Uncaught|UnhandledPromiseRejection|RangeError|TypeError|ReferenceError|Maximum call stack|FATAL ERROR|node:internal/.test(l) ||
    /"level":(5|6)0/.test(l))
}

export async function startChildBroker (confText: string, opts: { nodeArgs?: string[], startTimeoutMs?: number } = {}): Promise<ChildBroker> {
  if (!existsSync(DIST_MAIN)) throw new Error(`${DIST_MAIN} is missing: run \`npm run build\` first`)
  const dir = await mkdtemp(join(tmpdir(), 'midge-child-'))
  const confPath = join(dir, 'midge.conf')
  await writeFile(confPath, confText.replaceAll('{dir}', dir))
  const proc = spawn(process.execPath, ['--expose-gc', '--import', PROBE, ...(opts.nodeArgs ?? []), ...(process.env.MIDGE_CHILD_NODE_ARGS?.split(' ').filter(Boolean) ?? []), DIST_MAIN, '-c', confPath], {
    cwd: dir,
    env: { ...process.env, MIDGE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  let err = ''
  const uncaught: string[] = []
  const ports: number[] = []
  const expected = (confText.match(/^\s*listener\s/mg) ?? []).length || 1
  let exited = false
  const exit = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  void exit.then(() => { exited = true })
  const pending = new Map<number, (s: ProbeStats) => void>()
  let nextId = 1
  proc.on('message', (m: { type: string, id?: number, message?: string } & ProbeStats) => {
    if (m.type === 'uncaught') uncaught.push(m.message ?? '')
    if (m.type === 'stats' && m.id !== undefined) { pending.get(m.id)?.(m); pending.delete(m.id) }
  })
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child broker did not start:\n${err}`)), opts.startTimeoutMs ?? 15_000)
    proc.stderr!.setEncoding('utf8')
    proc.stderr!.on('data', (d: string) => {
      err += d
      for (const m of d.matchAll(/listen socket on port (\d+)\./g)) ports.push(Number(m[1]))
      if (ports.length >= expected) { clearTimeout(timer); resolve() }
    })
    void exit.then(([code, signal]) => { clearTimeout(timer); reject(new Error(`child broker exited (${code ?? signal}) before listening:\n${err}`)) })
  })
  proc.stdout!.resume()
  try {
    await ready
  } catch (e) {
    proc.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
    throw e
  }
  return {
    proc,
    dir,
    ports,
    uncaught,
    stderr: () => err,
    alive: () => !exited,
    stats: ({ gc = true, resetDelay = false } = {}) => new Promise<ProbeStats>((resolve, reject) => {
      if (exited) { reject(new Error(`child broker is not running:\n${err.slice(-4000)}`)); return }
      const id = nextId++
      const t = setTimeout(() => { pending.delete(id); reject(new Error('child broker did not answer a stats request in 30 s')) }, 30_000)
      pending.set(id, s => { clearTimeout(t); resolve(s) })
      proc.send({ type: 'stats', id, gc, resetDelay })
    }),
    close: async () => {
      if (!exited) {
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
        await exit
        clearTimeout(t)
      }
      const [code, signal] = await exit
      await rm(dir, { recursive: true, force: true })
      return { code, signal }
    }
  }
}
