/**
 * Runs the built daemon (`node dist/main.js -c FILE`) as a real child process, on a data dir the test owns, so that
 * it can be SIGKILLed and started again on the same store (issue 3). Build first: `npm run build`.
 * Ready = the log line `Midge version ... running`; ports come from `Opening <transport> listen socket on port N.`
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
export const MIDGE_MAIN = join(ROOT, 'dist/main.js')

export interface MidgeProcess {
  proc: ChildProcess
  ports: number[]
  url (i?: number): string
  /** stderr + stdout so far. */
  output (): string
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  kill (signal?: NodeJS.Signals): Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Writes `conf` (with `{dir}` replaced) to `<dir>/<name>` and returns its path. */
export async function writeConf (dir: string, conf: string, name = 'midge.conf'): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, conf.replaceAll('{dir}', dir))
  return path
}

function run (args: string[], cwd: string): { proc: ChildProcess, output: () => string, exited: MidgeProcess['exited'] } {
  if (!existsSync(MIDGE_MAIN)) throw new Error(`${MIDGE_MAIN} is missing: run \`npm run build\` first`)
  const proc = spawn(process.execPath, [MIDGE_MAIN, ...args], {
    cwd,
    env: { ...process.env, MIDGE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d })
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(res => proc.once('exit', (code, signal) => res({ code, signal })))
  return { proc, output: () => out, exited }
}

/** Starts Midge on `confPath` and waits until it logs that it runs. Rejects (with its output) if it exits first. */
export async function spawnMidge (confPath: string, cwd: string, timeoutMs = 20_000): Promise<MidgeProcess> {
  const { proc, output, exited } = run(['-c', confPath], cwd)
  await new Promise<void>((resolveReady, reject) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`Midge did not start in ${timeoutMs} ms:\n${output()}`)) }, timeoutMs)
    const check = (): void => {
      if (/Midge version \S+ running/.test(output())) { clearTimeout(t); resolveReady() }
    }
    proc.stderr!.on('data', check)
    proc.stdout!.on('data', check)
    void exited.then(({ code, signal }) => { clearTimeout(t); reject(new Error(`Midge exited (${code ?? signal}) before running:\n${output()}`)) })
  })
  const ports = [...output().matchAll(/Opening \w+ listen socket on port (\d+)\./g)].map(m => Number(m[1]))
  return {
    proc,
    ports,
    url: (i = 0) => `mqtt://127.0.0.1:${ports[i]}`,
    output,
    exited,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    }
  }
}

/** Runs `midge ARGS` to completion (subcommands, start-up failures): exit code and output. */
export async function runMidge (args: string[], cwd: string, timeoutMs = 20_000): Promise<{ code: number | null, output: string }> {
  const { proc, output, exited } = run(args, cwd)
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const { code } = await exited
  clearTimeout(t)
  return { code, output: output() }
}
