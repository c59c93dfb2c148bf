/** The built binary: flags, exit codes, stderr text, signals, logs (spawned as a real process). */
import { test, expect } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import { existsSync, readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/start-broker.js'
import { connect, collect } from '../helpers/mqtt.js'
import { freePort, spawnMidge, spawnMidgeWith, runMidge, writeConf } from '../helpers/processes.js'

test('--help lists mosquitto\'s flags and the subcommands; exit 0', async () => {
  const r = await runMidge(['--help'], process.cwd())
  expect(r.code).toBe(0)
  for (const s of ['-c, --config-file <file>', '-p, --port <port>', '-v, --verbose', 'check']) expect(r.output).toContain(s)
})

test('midge check prints the effective settings without opening ports, exit 0', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 1 127.0.0.1\nallow_anonymous true\nmax_queued_messages 7\n')
  // port 1 would need root to open: check must not try
  const r = await runMidge(['check', '-c', conf], dir)
  expect(r.code).toBe(0)
  expect(r.output).toContain('Configuration OK')
  const json = JSON.parse(r.output.slice(r.output.indexOf('{'), r.output.lastIndexOf('}') + 1)) as { limits: { maxQueuedMessages: number }, listeners: Array<{ port: number }> }
  expect([json.limits.maxQueuedMessages, json.listeners[0]!.port]).toEqual([7, 1])
})

test('a bad config lists every problem with file:line and exits 3 (check and run alike)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous yes\nfrobnicate 1\n')
  for (const args of [['check', '-c', conf], ['-c', conf]]) {
    const r = await runMidge(args, dir)
    expect(r.code).toBe(3)
    expect(r.output.trim().split('\n')).toEqual([
      `Error: Invalid allow_anonymous value (yes). Error found at ${conf}:2.`,
      `Error: Unknown configuration variable "frobnicate". Error found at ${conf}:3.`
    ])
  }
})

test('a missing config file is a config error (exit 3)', async () => {
  const r = await runMidge(['-c', '/nonexistent/midge.conf'], process.cwd())
  expect(r.code).toBe(3)
  expect(r.output.trim()).toBe('Error: Unable to open config file /nonexistent/midge.conf: No such file or directory.')
})

test('a port in use stops start-up with one readable line, exit 1, and nothing left listening', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const blocker = net.createServer()
  blocker.listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  onTestFinished(() => { blocker.close() })
  const busy = (blocker.address() as net.AddressInfo).port
  // the first listener opens, the second fails: the first must be closed again (the process exits)
  const conf = await writeConf(dir, `listener 0 127.0.0.1\nlistener ${busy} 127.0.0.1\nallow_anonymous true\n`)
  const r = await runMidge(['-c', conf], dir)
  expect(r.code).toBe(1)
  const errors = r.output.trim().split('\n').filter(l => !l.startsWith('{'))
  expect(errors).toEqual([`Error: could not open tcp listener on 127.0.0.1:${busy} (${conf}:2): Address already in use.`])
})

test('an unwritable data dir stops start-up with one readable line, exit 1', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const ro = join(dir, 'ro')
  mkdirSync(ro)
  writeFileSync(join(ro, 'midge.db'), 'a file where the store directory should be')
  chmodSync(ro, 0o500)
  const conf = await writeConf(dir, `listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${ro}\n`)
  const r = await runMidge(['-c', conf], dir)
  expect(r.code).toBe(1)
  const errors = r.output.trim().split('\n').filter(l => !l.startsWith('{'))
  expect(errors).toHaveLength(1)
  expect(errors[0]).toMatch(new RegExp(`^Error: .*${join(ro, 'midge.db')}`))
})

test('SIGTERM and SIGINT: stop accepting, close clients, flush the store, exit 0 within 5 s', async ({ onTestFinished }) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const { dir, remove } = await tempDir()
    onTestFinished(remove)
    const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/data\npid_file {dir}/midge.pid\n')
    const m = await spawnMidge(conf, dir)
    expect(readFileSync(join(dir, 'midge.pid'), 'utf8').trim()).toBe(String(m.proc.pid))
    const c = await connect(m.url(), { clientId: `held-${signal}`, clean: false })
    await c.subscribeAsync('keep/#', { qos: 1 })
    const closed = new Promise<void>(resolve => c.once('close', () => resolve()))
    const t0 = Date.now()
    const exit = await m.kill(signal)
    expect(exit).toEqual({ code: 0, signal: null })
    expect(Date.now() - t0).toBeLessThan(5000)
    await closed
    c.end(true)
    expect(existsSync(join(dir, 'midge.pid'))).toBe(false)
    expect(m.output()).toContain(`${signal} received, shutting down.`)
    // the store was closed cleanly: a new process opens it and still has the persistent session
    const again = await spawnMidge(conf, dir)
    const c2 = await connect(again.url(), { clientId: `held-${signal}`, clean: false })
    expect(c2.connected).toBe(true)
    const g = collect(c2)
    const pub = await connect(again.url(), { clientId: 'p' })
    await pub.publishAsync('keep/x', 'still subscribed', { qos: 1 })
    expect((await g.take(1)).map(m => m.payload)).toEqual(['still subscribed'])
    await pub.endAsync(); await c2.endAsync()
    expect((await again.kill('SIGTERM')).code).toBe(0)
  }
})

test('connection log lines carry client id, address and listener, and never the password', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, 'listener 0 127.0.0.1\nallow_anonymous true\n')
  const m = await spawnMidge(conf, dir)
  onTestFinished(async () => { await m.kill('SIGKILL') })
  const c = await connect(m.url(), { clientId: 'logged-client', username: 'someone', password: 'hunter2-secret' })
  await c.endAsync()
  await m.kill('SIGTERM')
  const lines = m.output().trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  const connected = lines.find(l => typeof l.msg === 'string' && l.msg.startsWith('New client connected'))
  expect(connected).toMatchObject({ clientId: 'logged-client', listener: 'tcp:0', remoteAddress: '127.0.0.1', username: 'someone' })
  expect(connected!.msg).toMatch(/^New client connected from 127\.0\.0\.1:\d+ as logged-client \(p4, c1, k60, u'someone'\)\.$/)
  expect(lines.some(l => l.msg === 'Client logged-client disconnected.')).toBe(true)
  expect(m.output()).not.toContain('hunter2-secret')
})

test('bare midge without a config listens on localhost:1883 only (local only mode)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  // -p moves the local-only listener to a free port so the test does not need 1883
  const port = await freePort()
  const m = await spawnMidgeWith(['-p', String(port)], dir)
  onTestFinished(async () => { await m.kill('SIGKILL') })
  expect(m.output()).toContain('Starting in local only mode.')
  expect(m.output()).toContain(`"address":"127.0.0.1","port":${port}`)
  const c = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'local' })
  await c.endAsync()
  await m.kill('SIGTERM')
})
