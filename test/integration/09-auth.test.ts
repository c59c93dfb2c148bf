/**
 * password_file (mosquitto_passwd format, both ways), `midge passwd`, allow_anonymous with per_listener_settings,
 * failed-login throttling, auth_plugin (config/auth-plugin-example.js) and SIGHUP reload of the password file.
 * Child-process tests need `npm run build` first.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { createHmac } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { hashPasswordSha512 } from '../../src/auth/password-hash.js'
import { freePort, midge, run, spawnMidge, spawnMosquitto, MIDGE_MAIN, PYTHON } from '../helpers/processes.js'
import { subackCodes, nextMessage } from '../helpers/mqtt.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const CONNACK = (code: number) => Buffer.from([0x20, 0x02, 0x00, code])

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'midge-auth-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** CONNECT with these credentials; the exact CONNACK bytes. */
async function connack (port: number, opts: { username?: string, password?: string, clientId?: string }): Promise<Buffer> {
  const c = await RawClient.connect(port)
  try {
    c.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: opts.clientId ?? 'c',
      keepalive: 60,
      ...(opts.username !== undefined ? { username: opts.username } : {}),
      ...(opts.password !== undefined ? { password: Buffer.from(opts.password) } : {})
    })
    await c.next('connack', 15_000)
    return Buffer.concat(c.received).subarray(0, 4)
  } finally { c.end() }
}

test('a password file made by Debian mosquitto_passwd works unchanged: right password 0, wrong password and unknown user 5', async ({ onTestFinished }) => {
  const pw = join(dir, 'debian.pw')
  expect((await run('mosquitto_passwd', ['-c', '-b', pw, 'alice', 's3cret'])).code).toBe(0)
  expect((await run('mosquitto_passwd', ['-b', pw, 'bob', 'hunter2'])).code).toBe(0)
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  expect(await connack(b.port(), { username: 'alice', password: 's3cret' })).toEqual(CONNACK(0))
  expect(await connack(b.port(), { username: 'bob', password: 'hunter2' })).toEqual(CONNACK(0))
  expect(await connack(b.port(), { username: 'alice', password: 'hunter2' })).toEqual(CONNACK(5))
  expect(await connack(b.port(), { username: 'mallory', password: 's3cret' })).toEqual(CONNACK(5))
  expect(await connack(b.port(), { username: 'alice' })).toEqual(CONNACK(5)) // user without password
  expect(await connack(b.port(), {})).toEqual(CONNACK(5)) // anonymous: allow_anonymous defaults to false
})

test('$6$ (mosquitto 1.x) entries verify next to $7$ ones', async ({ onTestFinished }) => {
  const pw = join(dir, 'old.pw')
  writeFileSync(pw, `old:${hashPasswordSha512('legacy')}\n`)
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  expect(await connack(b.port(), { username: 'old', password: 'legacy' })).toEqual(CONNACK(0))
  expect(await connack(b.port(), { username: 'old', password: 'Legacy' })).toEqual(CONNACK(5))
})

test('a file made by `midge passwd` is accepted by Debian mosquitto 2.0.11 (and refused with a wrong password)', async ({ onTestFinished }) => {
  const pw = join(dir, 'midge.pw')
  expect((await midge(['passwd', '-c', '-b', pw, 'carol', 'correct horse'])).code).toBe(0)
  expect(statSync(pw).mode & 0o777).toBe(0o600)
  expect(readFileSync(pw, 'utf8')).toMatch(/^carol:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/)
  expect((await midge(['passwd', '-H', 'sha512', '-b', pw, 'dave', 'old style'])).code).toBe(0) // $6$, mosquitto 1.x
  expect((await midge(['passwd', '-I', '1000', '-b', pw, 'erin', 'more rounds'])).code).toBe(0)
  const [, dave, erin] = readFileSync(pw, 'utf8').split('\n')
  expect(dave).toMatch(/^dave:\$6\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/)
  expect(erin).toMatch(/^erin:\$7\$1000\$/)
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  // `user`: mosquitto started as root would switch to the mosquitto user, which cannot read a 0600 file in our temp dir
  writeFileSync(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\npassword_file ${pw}\nlog_dest stderr\n`)
  const m = await spawnMosquitto(conf)
  onTestFinished(() => m.stop())
  const ok = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', 'carol', '-P', 'correct horse', '-t', 't', '-m', 'x'])
  expect([ok.code, ok.stderr]).toEqual([0, ''])
  for (const [u, p] of [['dave', 'old style'], ['erin', 'more rounds']]) {
    const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', u!, '-P', p!, '-t', 't', '-m', 'x'])
    expect([u, r.code, r.stderr]).toEqual([u, 0, ''])
  }
  const bad = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', 'carol', '-P', 'wrong', '-t', 't', '-m', 'x'])
  expect(bad.code).not.toBe(0)
  expect(bad.stderr).toContain('not authorised')
})

test('`midge passwd` prompts twice without echo; a mismatch changes nothing; -D deletes; -U hashes plain-text lines', async () => {
  const pw = join(dir, 'prompt.pw')
  expect((await midge(['passwd', '-c', '-b', pw, 'first', 'one'])).code).toBe(0)
  const added = await midge(['passwd', pw, 'dave'], { input: 'typed-pw\ntyped-pw\n' })
  expect([added.code, added.stderr]).toEqual([0, 'Password: \nReenter password: \n'])
  expect(added.stdout).toBe('') // nothing echoed
  const before = readFileSync(pw, 'utf8')
  const mismatch = await midge(['passwd', pw, 'erin'], { input: 'aaa\nbbb\n' })
  expect(mismatch.code).not.toBe(0)
  expect(mismatch.stderr).toContain('Error: Passwords do not match.')
  expect(readFileSync(pw, 'utf8')).toBe(before)
  expect((await midge(['passwd', '-D', pw, 'first'])).code).toBe(0)
  writeFileSync(pw, `${readFileSync(pw, 'utf8')}plain:text-pw\n`)
  expect((await midge(['passwd', '-U', pw])).code).toBe(0)
  const lines = readFileSync(pw, 'utf8').trim().split('\n')
  expect(lines.map(l => l.split(':')[0])).toEqual(['dave', 'plain'])
  expect(readFileSync(pw, 'utf8')).not.toContain('text-pw')
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  try {
    expect(await connack(b.port(), { username: 'dave', password: 'typed-pw' })).toEqual(CONNACK(0))
    expect(await connack(b.port(), { username: 'plain', password: 'text-pw' })).toEqual(CONNACK(0))
    expect(await connack(b.port(), { username: 'first', password: 'one' })).toEqual(CONNACK(5))
  } finally { await b.close() }
})

test('`midge passwd` on a terminal: no echo of either password (driven through a pty)', async () => {
  const pw = join(dir, 'tty.pw')
  // python's pty module gives the child a real terminal; everything the terminal shows is captured
  const script = `
import pty, os, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2], 'passwd', '-c', sys.argv[3], 'ttyuser'])
out = b''
def pump(until=None, t=10.0):
    global out
    end = time.time() + t
    while time.time() < end and (until is None or until not in out):
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            if until is None: return
            continue
        try:
            d = os.read(fd, 1024)
        except OSError:
            return
        if not d: return
        out += d
pump(b'Password: ')
os.write(fd, b'tty-secret-1\\r')
pump(b'Reenter password: ')
os.write(fd, b'tty-secret-1\\r')
pump()
_, status = os.waitpid(pid, 0)
sys.stdout.write(repr(out) + ' ' + str(os.WEXITSTATUS(status)))
`
  const r = await run(PYTHON, ['-c', script, process.execPath, MIDGE_MAIN, pw], { timeoutMs: 20_000 })
  expect(r.stdout).toBe(String.raw`b'Password: \r\nReenter password: \r\n' 0`)
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  try {
    expect(await connack(b.port(), { username: 'ttyuser', password: 'tty-secret-1' })).toEqual(CONNACK(0))
  } finally { await b.close() }
})

test('per_listener_settings: an open listener and an authenticated one side by side', async ({ onTestFinished }) => {
  const pw = join(dir, 'pls.pw')
  await midge(['passwd', '-c', '-b', pw, 'user', 'pass'])
  const b = await startTestBroker(`per_listener_settings true\nlistener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nallow_anonymous false\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  const [open, authed] = b.broker.bound.map(x => x.address.port) as [number, number]
  expect(await connack(open, {})).toEqual(CONNACK(0))
  expect(await connack(authed, {})).toEqual(CONNACK(5))
  expect(await connack(authed, { username: 'user', password: 'pass' })).toEqual(CONNACK(0))
  // the open listener has no password_file: a username is not checked there (mosquitto does the same)
  expect(await connack(open, { username: 'user', password: 'wrong' })).toEqual(CONNACK(0))
})

test('failed logins are throttled per address: after 3 failures the next answers wait, doubling; a success clears it', async ({ onTestFinished }) => {
  const pw = join(dir, 'throttle.pw')
  await midge(['passwd', '-c', '-b', pw, 'user', 'pass'])
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  const timed = async (password: string): Promise<[number, number]> => {
    const t0 = performance.now()
    const ack = await connack(b.port(), { username: 'user', password })
    return [ack[3]!, performance.now() - t0]
  }
  const free: Array<[number, number]> = []
  for (let i = 0; i < 3; i++) free.push(await timed('guess'))
  expect(free.map(x => x[0])).toEqual([5, 5, 5])
  for (const [, ms] of free) expect(ms).toBeLessThan(400)
  const [c4, t4] = await timed('guess') // waits 500 ms
  const [c5, t5] = await timed('guess') // waits 1000 ms
  expect([c4, c5]).toEqual([5, 5])
  expect(t4).toBeGreaterThanOrEqual(450)
  expect(t5).toBeGreaterThanOrEqual(950)
  // the right password is also delayed while the address is penalised, then clears it
  const [ok, tOk] = await timed('pass')
  expect(ok).toBe(0)
  expect(tOk).toBeGreaterThanOrEqual(1900)
  const [again, tAgain] = await timed('guess')
  expect(again).toBe(5)
  expect(tAgain).toBeLessThan(400)
})

test('30 parallel good logins from one address (devices behind one NAT) all get CONNACK 0 without delay', async ({ onTestFinished }) => {
  const pw = join(dir, 'nat.pw')
  await midge(['passwd', '-c', '-b', pw, 'user', 'pass'])
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  const t0 = performance.now()
  const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => connack(b.port(), { username: 'user', password: 'pass', clientId: `dev${i}` })))
  expect(acks.map(a => a[3])).toEqual(Array(30).fill(0))
  // spaced like failures they would take 0.5 + 1.5 + 3.5 + 7.5 s and the 9th would be refused; generous for a loaded machine
  expect(performance.now() - t0).toBeLessThan(2000)
})

test('parallel guesses from one address are refused without being checked once the queue is longer than 8 s', async ({ onTestFinished }) => {
  const pw = join(dir, 'flood.pw')
  await midge(['passwd', '-c', '-b', pw, 'user', 'pass'])
  const b = await startTestBroker(`listener 0 127.0.0.1\npassword_file ${pw}\n`)
  onTestFinished(() => b.close())
  for (let i = 0; i < 3; i++) await connack(b.port(), { username: 'user', password: 'x' })
  // waiting attempts count as failures: slots at +0.5 s, +1 s, +2 s, +4 s, +8 s; the other 25 are refused at once
  const t0 = performance.now()
  const acks = await Promise.all(Array.from({ length: 30 }, () => connack(b.port(), { username: 'user', password: 'x' }).then(a => [a[3], performance.now() - t0] as const)))
  expect(acks.every(([code]) => code === 5)).toBe(true)
  const immediate = acks.filter(([, ms]) => ms < 400).length
  expect(immediate).toBe(25)
}, 30_000)

test('auth_plugin: config/auth-plugin-example.js authenticates device tokens and confines each device to its own topics', async ({ onTestFinished }) => {
  const secretFile = join(dir, 'device-secret')
  writeFileSync(secretFile, 'a-long-enough-test-secret\n', { mode: 0o600 })
  const token = (u: string) => createHmac('sha256', 'a-long-enough-test-secret').update(u).digest('hex')
  const b = await startTestBroker(`listener 0 127.0.0.1\nauth_plugin ${join(ROOT, 'config/auth-plugin-example.js')}\nauth_opt_secret_file ${secretFile}\n`)
  onTestFinished(() => b.close())
  expect(await connack(b.port(), { username: 'sensor-1', password: token('sensor-1') })).toEqual(CONNACK(0))
  expect(await connack(b.port(), { username: 'sensor-1', password: token('sensor-2') })).toEqual(CONNACK(5))
  const s1 = await mqtt.connectAsync(b.url(), { clientId: 's1', username: 'sensor-1', password: token('sensor-1'), reconnectPeriod: 0 })
  onTestFinished(() => s1.endAsync())
  expect(await subackCodes(s1, { 'devices/sensor-1/#': { qos: 1 }, 'devices/sensor-2/#': { qos: 1 } })).toEqual([1, 0x80])
  const got = nextMessage(s1)
  await s1.publishAsync('devices/sensor-2/cmd', 'not mine', { qos: 1 }) // acked and dropped
  await s1.publishAsync('devices/sensor-1/cmd', 'mine', { qos: 1 })
  const [topic, payload] = await got
  expect([topic, payload.toString()]).toEqual(['devices/sensor-1/cmd', 'mine'])
})

test('auth_plugin reload (SIGHUP path): the example plugin rereads its secret; old tokens stop working', async ({ onTestFinished }) => {
  const secretFile = join(dir, 'rotating-secret')
  writeFileSync(secretFile, 'first-secret-0123456789\n')
  const token = (secret: string, u: string) => createHmac('sha256', secret).update(u).digest('hex')
  const b = await startTestBroker(`listener 0 127.0.0.1\nauth_plugin ${join(ROOT, 'config/auth-plugin-example.js')}\nauth_opt_secret_file ${secretFile}\n`)
  onTestFinished(() => b.close())
  expect(await connack(b.port(), { username: 'd', password: token('first-secret-0123456789', 'd') })).toEqual(CONNACK(0))
  writeFileSync(secretFile, 'second-secret-0123456789\n')
  await b.broker.reload()
  expect(await connack(b.port(), { username: 'd', password: token('first-secret-0123456789', 'd') })).toEqual(CONNACK(5))
  expect(await connack(b.port(), { username: 'd', password: token('second-secret-0123456789', 'd') })).toEqual(CONNACK(0))
  writeFileSync(secretFile, 'short\n') // refused by the plugin's reload: the second secret stays
  await b.broker.reload()
  expect(await connack(b.port(), { username: 'd', password: token('second-secret-0123456789', 'd') })).toEqual(CONNACK(0))
})

test('a plugin that answers something other than allow/deny/defer, or throws, gives CONNACK 3 (server unavailable)', async ({ onTestFinished }) => {
  const p = join(dir, 'odd-plugin.mjs')
  writeFileSync(p, 'export default () => ({ name: "odd", async authenticate ({ username }) { if (username === "boom") throw new Error("backend down"); return "yes" } })\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nauth_plugin ${p}\n`)
  onTestFinished(() => b.close())
  expect(await connack(b.port(), { username: 'u', password: 'p' })).toEqual(CONNACK(3))
  expect(await connack(b.port(), { username: 'boom', password: 'p' })).toEqual(CONNACK(3))
})

test('auth_plugin errors stop start-up with one line naming the plugin', async () => {
  const bad = join(dir, 'bad-plugin.mjs')
  writeFileSync(bad, 'export default function () { throw new Error("no secret configured") }\n')
  const conf = join(dir, 'bad-plugin.conf')
  writeFileSync(conf, `listener 0 127.0.0.1\nauth_plugin ${bad}\n`)
  const r = await midge(['-c', conf])
  expect(r.code).toBe(1)
  expect(r.stderr.trim().split('\n').at(-1)).toBe(`Error: unable to load auth_plugin "${bad}": its factory failed: no secret configured.`)
  writeFileSync(conf, `listener 0 127.0.0.1\nauth_plugin ${join(dir, 'missing.js')}\n`)
  const r2 = await midge(['-c', conf])
  expect(r2.code).toBe(1)
  expect(r2.stderr).toContain(`Error: unable to load auth_plugin "${join(dir, 'missing.js')}": no such file.`)
})

test('SIGHUP reloads the password file without dropping connections; a broken file keeps the old users; passwords never logged', async ({ onTestFinished }) => {
  const pw = join(dir, 'hup.pw')
  await midge(['passwd', '-c', '-b', pw, 'old', 'old-password'])
  const conf = join(dir, 'hup.conf')
  writeFileSync(conf, `listener 0 127.0.0.1\npassword_file ${pw}\n`)
  const d = await spawnMidge(conf)
  onTestFinished(() => d.stop())
  const port = d.ports[0]!
  const live = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'live', username: 'old', password: 'old-password', reconnectPeriod: 0 })
  onTestFinished(() => live.endAsync())
  await midge(['passwd', '-b', pw, 'new', 'new-password'])
  await midge(['passwd', '-D', pw, 'old'])
  let reloaded = d.waitFor(/auth provider reloaded/)
  d.proc.kill('SIGHUP')
  await reloaded
  expect(await connack(port, { username: 'new', password: 'new-password' })).toEqual(CONNACK(0))
  expect(await connack(port, { username: 'old', password: 'old-password' })).toEqual(CONNACK(5))
  // the connection made with the old credentials stays up
  const echo = nextMessage(live)
  await live.subscribeAsync('still/here')
  await live.publishAsync('still/here', 'yes')
  expect((await echo)[1].toString()).toBe('yes')
  // a broken file: the reason is logged, the old table stays
  writeFileSync(pw, `${readFileSync(pw, 'utf8')}broken-line-without-hash\n`)
  reloaded = d.waitFor(/reload failed; keeping the previous rules/)
  d.proc.kill('SIGHUP')
  const line = await reloaded
  expect(line).toBeTruthy()
  expect(d.output()).toContain(`${pw}:2: not a \\"username:hash\\" line, ignored.`)
  expect(await connack(port, { username: 'new', password: 'new-password' })).toEqual(CONNACK(0))
  expect(d.output()).not.toContain('new-password')
  expect(d.output()).not.toContain('old-password')
})

test('`midge check` does not print auth_opt values that look secret', async () => {
  const conf = join(dir, 'check.conf')
  // check loads the plug-in as start-up does, so it must exist
  const plugin = join(dir, 'check-plugin.mjs')
  writeFileSync(plugin, 'export default () => ({ name: "p", async authenticate () { return "defer" } })\n')
  writeFileSync(conf, `listener 0 127.0.0.1\nauth_plugin ${plugin}\nauth_opt_db_password hunter2\nauth_opt_secret_file /etc/s\nauth_opt_host db\n`)
  const r = await midge(['check', '-c', conf])
  expect(r.code).toBe(0)
  expect(r.stdout).not.toContain('hunter2')
  const cfg = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('}') + 1)) as { auth: { plugins: Array<{ options: Record<string, string> }> } }
  expect(cfg.auth.plugins[0]!.options).toEqual({ db_password: '[redacted]', secret_file: '/etc/s', host: 'db' })
})
