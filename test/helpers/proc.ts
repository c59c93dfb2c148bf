import { spawn, type SpawnOptions } from 'node:child_process'

export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/**
 * Runs a command to completion (with a hard timeout), capturing output; `input` goes to stdin. Midge children log
 * JSON lines (MIDGE_LOG_FORMAT=json) so tests can parse them.
 */
export function run (cmd: string, args: string[], opts: SpawnOptions & { input?: string, timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, MIDGE_LOG_FORMAT: 'json' }, ...opts, stdio: ['pipe', 'pipe', 'pipe'] })
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

/** Debian's python3 (with python3-paho-mqtt), not a pyenv shim. */
export const PYTHON = '/usr/bin/python3'
