/**
 * Child processes for the security tests: the built daemon (`node dist/main.js`, build first with
 * `npm run build`), Debian's mosquitto as the reference broker, and one-shot commands (mosquitto_pub/sub, python).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import type { MqttClient } from 'mqtt'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
export const MAIN = join(ROOT, 'dist/main.js')
export const PYTHON = '/usr/bin/python3'

export interface Done { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** Runs a command to completion with a hard timeout, capturing output; `input` is written to stdin. */
export function runCmd (cmd: string, args: string[], opts: { input?: string, timeoutMs?: number, cwd?: string } = {}): Promise<Done> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, MIDGE_LOG_FORMAT: 'json' } })
    let stdout = ''; let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
    child.on('error', err => { clearTimeout(t); rej(err) })
    child.on('close', (code, signal) => { clearTimeout(t); res({ code, signal, stdout, stderr }) })
    child.stdin.on('error', () => {}) // a command that exits without reading stdin: EPIPE is not a test failure
    child.stdin.end(opts.input ?? '')
  })
}

export function midge (args: string[], opts: { input?: string, cwd?: string } = {}): Promise<Done> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`)
  return runCmd(process.execPath, [MAIN, ...args], opts)
}

export interface Daemon {
  proc: ChildProcess
  ports: number[]
  output (): string
  /** Resolves when `re` matches the output (after what is already there), or rejects after timeoutMs. */
  waitFor (re: RegExp, timeoutMs?: number): Promise<string>
  stop (): Promise<void>
}

function daemon (proc: ChildProcess, ready: RegExp, portRe: RegExp, timeoutMs: number): Promise<Daemon> {
  let out = ''
  const listeners = new Set<() => void>()
  const onData = (d: string): void => { out += d; for (const l of listeners) l() }
  proc.stdout!.setEncoding('utf8').on('data', onData)
  proc.stderr!.setEncoding('utf8').on('data', onData)
  const exited = new Promise<void>(res => proc.once('exit', () => res()))
  const waitFor = (re: RegExp, ms = timeoutMs, from = 0): Promise<string> => new Promise((res, rej) => {
    const check = (): boolean => {
      const m = re.exec(out.slice(from))
      if (m) { cleanup(); res(m[0]); return true }
      return false
    }
    const t = setTimeout(() => { cleanup(); rej(new Error(`timed out waiting for ${re}:\n${out}`)) }, ms)
    const onExit = (): void => { if (!check()) { cleanup(); rej(new Error(`process exited while waiting for ${re}:\n${out}`)) } }
    const cleanup = (): void => { clearTimeout(t); listeners.delete(check); proc.off('exit', onExit) }
    listeners.add(check)
    proc.once('exit', onExit)
    check()
  })
  return waitFor(ready).then(() => ({
    proc,
    ports: [...out.matchAll(portRe)].map(m => Number(m[1])),
    output: () => out,
    waitFor: (re: RegExp, ms?: number) => waitFor(re, ms, out.length),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      await exited
    }
  }), err => { proc.kill('SIGKILL'); throw err })
}

/** `node dist/main.js -c conf`, ready once it logs "Midge version ... running"; ports in listener order. */
export function spawnMidge (confPath: string, timeoutMs = 20_000): Promise<Daemon> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first`)
  const proc = spawn(process.execPath, [MAIN, '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MIDGE_LOG_FORMAT: 'json' } })
  return daemon(proc, /Midge version \S+ running/, /Opening \w+ listen socket on port (\d+)\./g, timeoutMs)
}

/** A port that was free a moment ago (for mosquitto, which cannot report an ephemeral port). */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>(res => srv.listen(0, '127.0.0.1', () => res()))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>(res => srv.close(() => res()))
  return port
}

/** Debian's mosquitto on `conf` (which must log to stderr), ready once it logs "running". */
export function spawnMosquitto (confPath: string, timeoutMs = 10_000): Promise<Daemon> {
  const proc = spawn('mosquitto', ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] })
  return daemon(proc, /mosquitto version \S+ running/, /Opening ipv4 listen socket on port (\d+)\./g, timeoutMs)
}

/** SUBACK return codes (MQTT.js rejects a SUBACK holding 0x80; the packet rides on the error). */
export async function subackCodes (c: MqttClient, subs: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  try {
    return (await c.subscribeAsync(subs)).map(g => g.qos)
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted
    if (!granted) throw err
    return granted
  }
}


/** The next message on an MQTT.js client (events.once does not type-check against MqttClient). */
export function nextMessage (c: MqttClient): Promise<[string, Buffer, { qos: number, retain: boolean }]> {
  return new Promise(resolve => c.once('message', (topic, payload, packet) => resolve([topic, payload, packet])))
}

/** The next 'error' of an MQTT.js client. */
export function nextError (c: MqttClient): Promise<Error> {
  return new Promise(resolve => c.once('error', err => resolve(err)))
}
