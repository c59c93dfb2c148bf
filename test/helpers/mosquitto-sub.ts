import { spawn } from 'node:child_process'

export interface SubDone { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** mosquitto_sub for `count` messages; `ready` resolves once its SUBACK arrived (its -d output). */
export function mosquittoSub (args: string[], count = 1): { ready: Promise<void>, done: Promise<SubDone> } {
  // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, and the SUBACK line is the readiness signal
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-d', '-C', String(count), '-W', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''; let stderr = ''
  let onReady: () => void = () => {}
  let onFail: (e: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => { onReady = resolve; onFail = reject })
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; if (stdout.includes('received SUBACK')) onReady() })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const done = new Promise<SubDone>(resolve => child.on('close', (code, signal) => {
    onFail(new Error(`mosquitto_sub exited before SUBACK: ${stdout}${stderr}`))
    resolve({ code, signal, stdout, stderr })
  }))
  return { ready, done }
}

/** The message lines of mosquitto_sub -d output (without its debug lines). */
export const messageLines = (s: string): string[] => s.trim().split('\n').filter(l => !l.startsWith('Client ') && !l.startsWith('Subscribed (mid') && l !== '')
