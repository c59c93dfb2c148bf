/**
 * The README's promise: `npm start` runs the broker with the embedded defaults of config/midge.conf
 * (TCP 1883 and WebSocket 8080 on all interfaces, anonymous allowed with a warning, LevelDB in ./data).
 * This test needs ports 1883 and 8080 free.
 */
import { test, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { once } from 'node:events'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, collect } from '../helpers/mqtt.js'
import { watch } from '../helpers/processes.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')

test('npm start answers MQTT on 1883 and MQTT over WebSocket on 8080, then stops on SIGTERM', async ({ onTestFinished }) => {
  const dataDir = join(ROOT, 'data')
  const hadData = existsSync(dataDir)
  // npm start -> node dist/main.js: signal the node process itself (npm does not forward signals reliably)
  const proc = spawn('npm', ['start', '--silent'], { cwd: ROOT, env: { ...process.env, MIDGE_LOG_FORMAT: 'json' }, detached: true })
  onTestFinished(() => {
    try { process.kill(-proc.pid!, 'SIGKILL') } catch {}
    if (!hadData) rmSync(dataDir, { recursive: true, force: true })
  })
  const w = watch(proc)
  const out = (): string => w.output()
  await w.waitFor(/Midge version \S+ running/, 15_000).catch((err: Error) => { throw new Error(`npm start did not run; are ports 1883/8080 free?\n${err.message}`) })
  expect(out()).toContain('Anonymous access is allowed on tcp listener *:1883')
  expect(out()).toContain('Anonymous access is allowed on ws listener *:8080')
  expect(out()).toContain(`"path":"${join(ROOT, 'data', 'midge.db')}"`)
  const tcp = await connect('mqtt://127.0.0.1:1883', { clientId: 'npm-start-tcp' })
  const ws = await connect('ws://127.0.0.1:8080/mqtt', { clientId: 'npm-start-ws' })
  const g = collect(ws)
  await ws.subscribeAsync('npm/start', { qos: 1 })
  await tcp.publishAsync('npm/start', 'works', { qos: 1 })
  expect((await g.take(1)).map(m => m.payload)).toEqual(['works'])
  await tcp.endAsync(); await ws.endAsync()
  // SIGTERM to the process group (npm and the node process it started), as a terminal's Ctrl-C or systemd would
  process.kill(-proc.pid!, 'SIGTERM')
  await once(proc, 'close') // every process holding the output pipes (npm, sh, node) has exited
  expect(out()).toContain('SIGTERM received, shutting down.')
  expect(out()).toContain('Midge stopped.')
})
