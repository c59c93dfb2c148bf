/**
 * A real Redis for cluster tests: Debian's `redis-server` on a free loopback port, in a temp dir, with no
 * persistence files (`--save '' --appendonly no`); `stop()` removes the dir. `stop()` + `start()` again gives a
 * Redis that went away and came back on the same port (empty, unless `stop({ save: true })` wrote a dump first).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { freePort, watch, type Watched } from './processes.js'

export const REDIS_SERVER = '/usr/bin/redis-server'

export interface TestRedis {
  port: number
  url: string
  dir: string
  /** redis-server output so far (all runs). */
  output (): string
  /** Starts it (again) on the same port and dir. */
  start (): Promise<void>
  /** SIGKILL (`save: true`: SHUTDOWN SAVE, so that the next start has the data). Keeps the dir. */
  stop (opts?: { save?: boolean }): Promise<void>
  /** Sends one command (RESP over a socket) and returns the raw reply. */
  command (...args: string[]): Promise<string>
  /** Stops it and removes the dir. */
  close (): Promise<void>
}

/**
 * `extraArgs`: more redis-server options (e.g. `--requirepass`). `tls`: the port speaks TLS only (PEM files for
 * `--tls-cert-file`, `--tls-key-file`, `--tls-ca-cert-file`; clients need no certificate). `command()` needs plain TCP.
 */
export async function startRedis (extraArgs: string[] = [], tls?: { cert: string, key: string, ca: string }): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'midge-redis-'))
  const port = await freePort()
  let proc: ChildProcess | undefined
  /** Every run's output, in order (a restarted Redis keeps the log of the one before). */
  const runs: Watched[] = []

  const start = async (): Promise<void> => {
    const ports = tls ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no'] : ['--port', String(port)]
    const p = spawn(REDIS_SERVER, [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--dbfilename', 'dump.rdb', '--logfile', '', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc = p
    const w = watch(p)
    runs.push(w)
    try {
      await w.waitFor(/Ready to accept connections/, 15_000)
    } catch (err) {
      p.kill('SIGKILL')
      throw new Error(`redis-server did not start: ${(err as Error).message}`)
    }
  }

  const command = async (...args: string[]): Promise<string> => {
    const { connect } = await import('node:net')
    const sock = connect(port, '127.0.0.1')
    await once(sock, 'connect')
    sock.write(`*${args.length}\r\n${args.map(a => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
    // SHUTDOWN answers by closing the connection
    const reply = await new Promise<string>((resolve, reject) => {
      sock.once('data', (d: Buffer) => resolve(d.toString()))
      sock.once('close', () => resolve(''))
      sock.once('error', reject)
    })
    sock.destroy()
    return reply
  }

  const stop = async (opts: { save?: boolean } = {}): Promise<void> => {
    const p = proc
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
    const exited = once(p, 'exit')
    if (opts.save) {
      await command('SHUTDOWN', 'SAVE').catch(() => {})
    } else {
      p.kill('SIGKILL')
    }
    await exited
  }

  await start()
  return {
    port,
    url: `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`,
    dir,
    output: () => runs.map(r => r.output()).join(''),
    start,
    stop,
    command,
    close: async () => {
      await stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
}
