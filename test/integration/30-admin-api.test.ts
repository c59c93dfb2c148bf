/**
 * Admin API over real HTTP against an in-process Midge: authentication and its failures, scopes,
 * CSRF, validation errors with stable codes, and that every change reaches real MQTT clients at once
 * (MQTT.js, mosquitto_pub/sub) and lands in files Debian's mosquitto still reads.
 */
import { test, expect, describe } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import type { MqttClient } from 'mqtt'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { connect, collect, nextMessage } from '../helpers/mqtt.js'
import { loadConfig } from '../../src/index.js'
import { hashPassword } from '../../src/auth/password-hash.js'
import { ADMIN_ERR } from '../../src/admin/errors.js'
import { hashToken } from '../../src/admin/auth.js'
import { makeTestCerts } from '../helpers/certs.js'
import https from 'node:https'
import { run, freePort, spawnMosquitto } from '../helpers/processes.js'

const ADMIN = { user: 'root', password: 'admin-secret-1' }
const BASIC = `Basic ${Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64')}`

interface Env { b: TestBroker, dir: string, base: string, tcp: string, ws: string }

/** Broker with an MQTT listener and a websockets listener carrying the admin API; alice exists, ACL on. */
async function setup (onTestFinished: (fn: () => Promise<void>) => void, extra = ''): Promise<Env> {
  const { dir, remove } = await tempDir('midge-admin-')
  onTestFinished(remove)
  await writeFile(join(dir, 'passwd'), `# MQTT users\nalice:${hashPassword('alicepw')}\n`)
  await writeFile(join(dir, 'acl'), '# rules\nuser alice\ntopic readwrite alice/#\n')
  await writeFile(join(dir, 'admin.pw'), `${ADMIN.user}:${hashPassword(ADMIN.password)}\n`)
  await writeFile(join(dir, 'tokens'), `ro:read:${hashToken('midge_readonly')}\nrw:write:${hashToken('midge_readwrite')}\n`)
  const b = await startTestBroker([
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${dir}/passwd`,
    `acl_file ${dir}/acl`,
    `admin_password_file ${dir}/admin.pw`,
    `admin_token_file ${dir}/tokens`,
    'listener 0 127.0.0.1',
    'listener 0 127.0.0.1',
    'protocol websockets',
    'admin_enabled true',
    extra
  ].join('\n'))
  onTestFinished(() => b.close())
  const tls = b.broker.bound.some(x => x.config.transport === 'wss')
  return { b, dir, base: tls ? '' : `http://127.0.0.1:${b.port('ws')}`, tcp: b.url('tcp'), ws: b.url(tls ? 'wss' : 'ws') }
}

interface Reply { status: number, headers: Headers, json: any }

async function api (env: Env, method: string, path: string, opts: { body?: unknown, auth?: string, cookie?: string, csrf?: string, headers?: Record<string, string>, raw?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.auth) headers.authorization = opts.auth
  if (opts.cookie) headers.cookie = opts.cookie
  if (opts.csrf) headers['x-csrf-token'] = opts.csrf
  let body: string | undefined = opts.raw
  if (opts.body !== undefined) { body = JSON.stringify(opts.body); headers['content-type'] ??= 'application/json' }
  const r = await fetch(env.base + path, { method, headers, body })
  const text = await r.text()
  return { status: r.status, headers: r.headers, json: text === '' ? null : JSON.parse(text) }
}

async function login (env: Env): Promise<{ cookie: string, csrf: string, setCookie: string }> {
  const r = await api(env, 'POST', '/api/v1/session', { body: { username: ADMIN.user, password: ADMIN.password } })
  expect(r.status).toBe(200)
  const setCookie = r.headers.get('set-cookie')!
  return { cookie: setCookie.split(';')[0]!, csrf: r.json.csrfToken, setCookie }
}

/** Resolves when the client's connection closes. */
function whenClosed (c: MqttClient): Promise<void> {
  return new Promise(resolve => c.once('close', () => resolve()))
}

function mqttRefusal (url: string, username: string, password: string): Promise<number | undefined> {
  return connect(url, { username, password, clientId: `probe-${username}` }).then(async c => { await c.endAsync(true); return 0 }, (err: { code?: number }) => err.code)
}

describe('configuration', () => {
  test('the API and console are off unless a listener sets admin_enabled true', async ({ onTestFinished }) => {
    const b = await startTestBroker('listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n')
    onTestFinished(() => b.close())
    const base = `http://127.0.0.1:${b.port('ws')}`
    for (const p of ['/', '/api/v1/stats', '/api/v1/session', '/console/console.js']) {
      expect((await fetch(base + p)).status, p).toBe(404)
    }
  })

  test.each([
    ['listener 0\nadmin_enabled true\nadmin_password_file /tmp/x', 'admin_enabled needs a websockets listener'],
    ['listener 0\nprotocol websockets\nadmin_enabled true', 'admin_enabled true needs admin_password_file or admin_token_file'],
    ['password_file /tmp/pw\nadmin_password_file /tmp/pw\nlistener 0\nprotocol websockets\nadmin_enabled true', 'admin_password_file must not be a password_file of MQTT users'],
    ['listener 0\nprotocol websockets\nadmin_enabled maybe', 'Invalid admin_enabled value (maybe). Error found at test.conf:3.']
  ])('config error: %j', (text, message) => {
    expect(() => loadConfig({ configText: text, configName: 'test.conf' })).toThrow(message)
  })

  test('a missing or empty admin_password_file stops start-up with one readable line (exit code 1)', async ({ onTestFinished }) => {
    const { dir, remove } = await tempDir('midge-admin-')
    onTestFinished(remove)
    await writeFile(join(dir, 'empty.pw'), '# nobody yet\n')
    const conf = (f: string) => `listener 0 127.0.0.1\nprotocol websockets\nadmin_enabled true\nadmin_password_file ${f}\n`
    const missing = await startTestBroker(conf(join(dir, 'nope.pw'))).catch((e: { message: string, exitCode: number }) => e)
    expect(missing).toMatchObject({ exitCode: 1, message: `Error: unable to open admin_password_file "${join(dir, 'nope.pw')}": no such file.` })
    const empty = await startTestBroker(conf(join(dir, 'empty.pw'))).catch((e: { message: string, exitCode: number }) => e)
    expect(empty).toMatchObject({ exitCode: 1, message: `Error: admin_password_file "${join(dir, 'empty.pw')}" holds no valid user:hash line (make one with "mosquitto_passwd -c ${join(dir, 'empty.pw')} admin").` })
  })

  test('a non-TLS admin listener on a public address is a warning', () => {
    const cfg = loadConfig({ configText: 'listener 0 0.0.0.0\nprotocol websockets\nadmin_enabled true\nadmin_token_file /tmp/t\n', configName: 'test.conf' })
    expect(cfg.warnings.join('\n')).toMatch(/reachable without TLS/)
    const local = loadConfig({ configText: 'listener 0 127.0.0.1\nprotocol websockets\nadmin_enabled true\nadmin_token_file /tmp/t\n', configName: 'test.conf' })
    expect(local.warnings.join('\n')).not.toMatch(/without TLS/)
  })
})

describe('authentication', () => {
  test('on a TLS websockets listener the session cookie is Secure, and the console is served over https', async ({ onTestFinished }) => {
    // the page is a build product: build it as `npm run build` does (atomic renames, safe beside other tests)
    expect((await run(process.execPath, ['src/console/build.mjs'])).code).toBe(0)
    const certs = makeTestCerts()
    onTestFinished(() => certs.remove())
    const env = await setup(onTestFinished, `certfile ${certs.server.cert}\nkeyfile ${certs.server.key}`)
    const port = env.b.port('wss')
    const request = (method: string, path: string, body?: string) => new Promise<{ status: number, headers: Record<string, string | string[] | undefined>, text: string }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path, method, ca: readFileSync(certs.ca), servername: 'localhost', headers: body ? { 'content-type': 'application/json' } : {} }, res => {
        let text = ''
        res.setEncoding('utf8').on('data', (d: string) => { text += d }).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }))
      })
      req.on('error', reject)
      req.end(body)
    })
    const r = await request('POST', '/api/v1/session', JSON.stringify({ username: ADMIN.user, password: ADMIN.password }))
    expect(r.status).toBe(200)
    expect(r.headers['set-cookie']).toEqual([expect.stringMatching(/^midge_admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/)])
    const page = await request('GET', '/')
    expect([page.status, page.headers['content-type']]).toEqual([200, 'text/html; charset=utf-8'])
  })

  test('no credentials, wrong ones, and a good login with an HttpOnly SameSite=Strict cookie', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const none = await api(env, 'GET', '/api/v1/stats')
    expect([none.status, none.json.error.code]).toEqual([401, 'MIDGE_ERR_ADMIN_UNAUTHENTICATED'])
    const badBasic = await api(env, 'GET', '/api/v1/stats', { auth: `Basic ${Buffer.from('root:nope').toString('base64')}` })
    expect([badBasic.status, badBasic.json.error.code]).toEqual([401, 'MIDGE_ERR_ADMIN_UNAUTHENTICATED'])
    // an MQTT user's credentials are not admin credentials
    const mqttUser = await api(env, 'GET', '/api/v1/stats', { auth: `Basic ${Buffer.from('alice:alicepw').toString('base64')}` })
    expect(mqttUser.status).toBe(401)
    const badLogin = await api(env, 'POST', '/api/v1/session', { body: { username: 'alice', password: 'alicepw' } })
    expect([badLogin.status, badLogin.json.error.code]).toEqual([401, 'MIDGE_ERR_ADMIN_UNAUTHENTICATED'])
    expect(badLogin.headers.get('set-cookie')).toBeNull()

    const s = await login(env)
    expect(s.setCookie).toMatch(/^midge_admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/)
    expect(s.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const stats = await api(env, 'GET', '/api/v1/stats', { cookie: s.cookie })
    expect(stats.status).toBe(200)
    expect(stats.headers.get('cache-control')).toBe('no-store')
    const again = await api(env, 'GET', '/api/v1/session', { cookie: s.cookie })
    expect(again.json).toEqual({ user: 'root', csrfToken: s.csrf, scope: 'admin' })
    // logout needs the CSRF token too; afterwards the cookie is worthless
    expect((await api(env, 'DELETE', '/api/v1/session', { cookie: s.cookie })).json.error.code).toBe('MIDGE_ERR_ADMIN_CSRF')
    const out = await api(env, 'DELETE', '/api/v1/session', { cookie: s.cookie, csrf: s.csrf })
    expect(out.status).toBe(204)
    expect(out.headers.get('set-cookie')).toMatch(/^midge_admin=; .*Max-Age=0/)
    expect((await api(env, 'GET', '/api/v1/stats', { cookie: s.cookie })).status).toBe(401)

    // a new admin password in the file ends existing sessions at their next request, without a restart
    const s2 = await login(env)
    expect((await api(env, 'GET', '/api/v1/stats', { cookie: s2.cookie })).status).toBe(200)
    await writeFile(join(env.dir, 'admin.pw'), `${ADMIN.user}:${hashPassword('rotated-pw')}\n`)
    expect((await api(env, 'GET', '/api/v1/stats', { cookie: s2.cookie })).json.error.code).toBe('MIDGE_ERR_ADMIN_UNAUTHENTICATED')
    expect((await api(env, 'GET', '/api/v1/stats', { auth: `Basic ${Buffer.from('root:rotated-pw').toString('base64')}` })).status).toBe(200)
  })

  test('state-changing cookie requests need the session CSRF token and the same origin', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const s = await login(env)
    const body = { username: 'carol', password: 'carolpw' }
    const noToken = await api(env, 'POST', '/api/v1/users', { cookie: s.cookie, body })
    expect([noToken.status, noToken.json.error.code]).toEqual([403, 'MIDGE_ERR_ADMIN_CSRF'])
    const wrong = await api(env, 'POST', '/api/v1/users', { cookie: s.cookie, csrf: 'x'.repeat(43), body })
    expect([wrong.status, wrong.json.error.code]).toEqual([403, 'MIDGE_ERR_ADMIN_CSRF'])
    const crossSite = await api(env, 'POST', '/api/v1/users', { cookie: s.cookie, csrf: s.csrf, body, headers: { origin: 'http://evil.example' } })
    expect([crossSite.status, crossSite.json.error.code]).toEqual([403, 'MIDGE_ERR_ADMIN_CSRF'])
    // a form post (no JSON content type) is refused before anything else is looked at
    const form = await api(env, 'POST', '/api/v1/users', { cookie: s.cookie, csrf: s.csrf, raw: 'username=x&password=y', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    expect([form.status, form.json.error.code]).toEqual([415, 'MIDGE_ERR_ADMIN_UNSUPPORTED_MEDIA_TYPE'])
    expect((await api(env, 'GET', '/api/v1/users', { cookie: s.cookie })).json.users).toEqual([{ username: 'alice', disabled: false }])
    const ok = await api(env, 'POST', '/api/v1/users', { cookie: s.cookie, csrf: s.csrf, body, headers: { origin: env.base } })
    expect(ok.status).toBe(201)
  })

  test('failed logins are limited per address: the 6th answer is 429 with Retry-After, even with the right password', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const codes: number[] = []
    for (let i = 0; i < 5; i++) codes.push((await api(env, 'POST', '/api/v1/session', { body: { username: 'root', password: `guess${i}` } })).status)
    expect(codes).toEqual([401, 401, 401, 401, 401])
    const blocked = await api(env, 'POST', '/api/v1/session', { body: { username: ADMIN.user, password: ADMIN.password } })
    expect([blocked.status, blocked.json.error.code]).toEqual([429, 'MIDGE_ERR_ADMIN_RATE_LIMITED'])
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(200)
    const basic = await api(env, 'GET', '/api/v1/stats', { auth: BASIC })
    expect(basic.status).toBe(429)
  })

  test('tokens: read-only may GET only, write may change users but not tokens; only hashes are stored', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const ro = 'Bearer midge_readonly'
    const rw = 'Bearer midge_readwrite'
    expect((await api(env, 'GET', '/api/v1/users', { auth: ro })).status).toBe(200)
    const denied = await api(env, 'POST', '/api/v1/users', { auth: ro, body: { username: 'x', password: 'y' } })
    expect([denied.status, denied.json.error.code]).toEqual([403, 'MIDGE_ERR_ADMIN_FORBIDDEN'])
    expect((await api(env, 'DELETE', '/api/v1/clients/nobody', { auth: ro })).status).toBe(403)
    expect((await api(env, 'POST', '/api/v1/users', { auth: rw, body: { username: 'x', password: 'y' } })).status).toBe(201)
    expect((await api(env, 'GET', '/api/v1/tokens', { auth: rw })).status).toBe(403)
    expect((await api(env, 'GET', '/api/v1/stats', { auth: 'Bearer midge_wrong' })).status).toBe(401)

    const made = await api(env, 'POST', '/api/v1/tokens', { auth: BASIC, body: { name: 'ci', scope: 'read' } })
    expect(made.status).toBe(201)
    expect(made.json.token).toMatch(/^midge_[A-Za-z0-9_-]{43}$/)
    const file = await readFile(join(env.dir, 'tokens'), 'utf8')
    expect(file).not.toContain(made.json.token)
    expect(file).toContain(`ci:read:${hashToken(made.json.token)}\n`)
    expect((await api(env, 'GET', '/api/v1/clients', { auth: `Bearer ${made.json.token}` })).status).toBe(200)
    expect((await api(env, 'POST', '/api/v1/tokens', { auth: BASIC, body: { name: 'ci', scope: 'read' } })).json.error.code).toBe('MIDGE_ERR_ADMIN_TOKEN_EXISTS')
    expect((await api(env, 'GET', '/api/v1/tokens', { auth: BASIC })).json.tokens).toEqual([{ name: 'ro', scope: 'read' }, { name: 'rw', scope: 'write' }, { name: 'ci', scope: 'read' }])
    expect((await api(env, 'DELETE', '/api/v1/tokens/ci', { auth: BASIC })).status).toBe(204)
    expect((await api(env, 'GET', '/api/v1/clients', { auth: `Bearer ${made.json.token}` })).status).toBe(401)
  })
})

describe('validation', () => {
  test('bad bodies, fields and paths answer 400/404/405/413/415 with stable codes and field details', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const post = (path: string, body: unknown) => api(env, 'POST', path, { auth: BASIC, body })
    const missing = await post('/api/v1/users', { username: 'bob' })
    expect(missing.status).toBe(400)
    expect(missing.json.error).toEqual({ code: 'MIDGE_ERR_ADMIN_VALIDATION', message: 'password: is required', details: [{ field: 'password', message: 'is required' }] })
    const bad = await post('/api/v1/users', { username: 'a:b', password: '', admin: true })
    expect(bad.json.error.details).toEqual([
      { field: 'admin', message: 'unknown field' },
      { field: 'username', message: 'must not contain ":" (the password file separates user and hash with it)' },
      { field: 'password', message: 'must not be empty' }
    ])
    expect((await post('/api/v1/users', { username: 'dev+1', password: 'x' })).json.error.details[0].field).toBe('username')
    expect((await post('/api/v1/users', { username: 'alice', password: 'x' })).json.error.code).toBe('MIDGE_ERR_ADMIN_USER_EXISTS')
    const badJson = await api(env, 'POST', '/api/v1/users', { auth: BASIC, raw: '{"username":', headers: { 'content-type': 'application/json' } })
    expect([badJson.status, badJson.json.error.code]).toEqual([400, 'MIDGE_ERR_ADMIN_BAD_JSON'])
    expect((await post('/api/v1/users', ['x'])).json.error.code).toBe('MIDGE_ERR_ADMIN_BAD_JSON')
    const big = await post('/api/v1/users', { username: 'x', password: 'y'.repeat(70_000) })
    expect([big.status, big.json.error.code]).toEqual([413, 'MIDGE_ERR_ADMIN_PAYLOAD_TOO_LARGE'])
    const rule = await post('/api/v1/acl/rules', { kind: 'topic', user: 'alice', access: 'readonly', topic: 'a/#/b' })
    expect(rule.json.error.details).toEqual([
      { field: 'access', message: 'must be one of read, write, readwrite, deny' },
      { field: 'topic', message: 'is not a valid MQTT topic filter' }
    ])
    expect((await post('/api/v1/acl/rules', { kind: 'pattern', user: 'alice', access: 'read', topic: 'x/%u' })).json.error.details).toEqual([{ field: 'user', message: 'pattern rules apply to every client; leave user out (use %u in the topic)' }])
    expect((await post('/api/v1/acl/rules', { kind: 'topic', access: 'read', topic: 'x/%u' })).json.error.details).toEqual([{ field: 'topic', message: '%c and %u are only substituted in pattern rules' }])
    expect((await api(env, 'GET', '/api/v1/retained?limit=0', { auth: BASIC })).json.error.details).toEqual([{ field: 'limit', message: 'must be an integer from 1 to 1000' }])
    expect((await api(env, 'DELETE', '/api/v1/retained?topic=a/%2B', { auth: BASIC })).json.error.details).toEqual([{ field: 'topic', message: 'must be a topic name, without wildcards' }])
    expect((await api(env, 'DELETE', '/api/v1/acl/rules/zz', { auth: BASIC })).json.error.code).toBe('MIDGE_ERR_ADMIN_VALIDATION')
    expect((await api(env, 'DELETE', '/api/v1/acl/rules/0123456789abcdef', { auth: BASIC })).json.error.code).toBe('MIDGE_ERR_ADMIN_RULE_NOT_FOUND')
    expect((await api(env, 'PATCH', '/api/v1/users/nobody', { auth: BASIC, body: { disabled: true } })).json.error.code).toBe('MIDGE_ERR_ADMIN_USER_NOT_FOUND')
    expect((await api(env, 'PATCH', '/api/v1/users/alice', { auth: BASIC, body: {} })).json.error.details).toEqual([{ field: 'body', message: 'give password and/or disabled' }])
    const notFound = await api(env, 'GET', '/api/v1/nothing', { auth: BASIC })
    expect([notFound.status, notFound.json.error.code]).toEqual([404, 'MIDGE_ERR_ADMIN_NOT_FOUND'])
    const method = await api(env, 'PUT', '/api/v1/users', { auth: BASIC, body: {} })
    expect([method.status, method.json.error.code, method.headers.get('allow')]).toEqual([405, 'MIDGE_ERR_ADMIN_METHOD_NOT_ALLOWED', 'GET, POST'])
    // nothing above changed the files
    expect(await readFile(join(env.dir, 'passwd'), 'utf8')).toMatch(/^# MQTT users\nalice:\$7\$101\$[^\n]+\n$/)
    expect(await readFile(join(env.dir, 'acl'), 'utf8')).toBe('# rules\nuser alice\ntopic readwrite alice/#\n')
  })

  test('without password_file, acl_file or admin_token_file the matching endpoints answer 409 with their own code', async ({ onTestFinished }) => {
    const { dir, remove } = await tempDir('midge-admin-')
    onTestFinished(remove)
    await writeFile(join(dir, 'admin.pw'), `${ADMIN.user}:${hashPassword(ADMIN.password)}\n`)
    const b = await startTestBroker(`allow_anonymous true\nadmin_password_file ${dir}/admin.pw\nlistener 0 127.0.0.1\nprotocol websockets\nadmin_enabled true\n`)
    onTestFinished(() => b.close())
    const env = { b, dir, base: `http://127.0.0.1:${b.port('ws')}`, tcp: '', ws: '' }
    const codes = []
    for (const p of ['/api/v1/users', '/api/v1/acl/rules', '/api/v1/tokens']) {
      const r = await api(env, 'GET', p, { auth: BASIC })
      codes.push([r.status, r.json.error.code])
    }
    expect(codes).toEqual([[409, 'MIDGE_ERR_ADMIN_NO_PASSWORD_FILE'], [409, 'MIDGE_ERR_ADMIN_NO_ACL_FILE'], [409, 'MIDGE_ERR_ADMIN_NO_TOKEN_FILE']])
    expect((await api(env, 'GET', '/api/v1/clients', { auth: BASIC })).status).toBe(200)
  })

  test('every error code is documented in docs/openapi.yaml and docs/errors.md', async () => {
    const root = new URL('../../', import.meta.url)
    const openapi = await readFile(new URL('docs/openapi.yaml', root), 'utf8')
    const errors = await readFile(new URL('docs/errors.md', root), 'utf8')
    for (const { code, status } of Object.values(ADMIN_ERR)) {
      expect(openapi, code).toContain(code)
      expect(errors, code).toMatch(new RegExp(`\`${code}\` \\| ${status}`))
    }
  })
})

describe('changes reach MQTT clients at once', () => {
  test('a new user can connect; changing the password, disabling and deleting apply at once', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    expect(await mqttRefusal(env.tcp, 'bob', 'bobpw')).toBe(5)
    expect((await api(env, 'POST', '/api/v1/users', { auth: BASIC, body: { username: 'bob', password: 'bobpw' } })).status).toBe(201)
    expect(await mqttRefusal(env.tcp, 'bob', 'bobpw')).toBe(0)
    expect((await api(env, 'PATCH', '/api/v1/users/bob', { auth: BASIC, body: { password: 'new-bobpw' } })).json).toEqual({ username: 'bob', disabled: false })
    expect(await mqttRefusal(env.tcp, 'bob', 'bobpw')).toBe(5)
    expect(await mqttRefusal(env.tcp, 'bob', 'new-bobpw')).toBe(0)

    // disabling ends bob's live connection and refuses the next one; enabling restores the same password
    const live = await connect(env.ws, { username: 'bob', password: 'new-bobpw', clientId: 'bob-live' }, onTestFinished)
    const closed = whenClosed(live)
    expect((await api(env, 'PATCH', '/api/v1/users/bob', { auth: BASIC, body: { disabled: true } })).json).toEqual({ username: 'bob', disabled: true })
    await closed
    expect(await mqttRefusal(env.tcp, 'bob', 'new-bobpw')).toBe(5)
    const file = await readFile(join(env.dir, 'passwd'), 'utf8')
    expect(file).toMatch(/^# MQTT users\nalice:\$7\$[^\n]+\n#midge-disabled bob:\$7\$101\$[^\n]+\n$/)
    expect((await api(env, 'GET', '/api/v1/users', { auth: BASIC })).json.users).toEqual([{ username: 'alice', disabled: false }, { username: 'bob', disabled: true }])
    await api(env, 'PATCH', '/api/v1/users/bob', { auth: BASIC, body: { disabled: false } })
    expect(await mqttRefusal(env.tcp, 'bob', 'new-bobpw')).toBe(0)

    expect((await api(env, 'DELETE', '/api/v1/users/bob', { auth: BASIC })).status).toBe(204)
    expect(await mqttRefusal(env.tcp, 'bob', 'new-bobpw')).toBe(5)
    expect((await api(env, 'DELETE', '/api/v1/users/bob', { auth: BASIC })).json.error.code).toBe('MIDGE_ERR_ADMIN_USER_NOT_FOUND')
  })

  test('a new ACL rule applies to the next message of an existing subscription and to mosquitto_pub', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    await api(env, 'POST', '/api/v1/users', { auth: BASIC, body: { username: 'bob', password: 'bobpw' } })
    const bob = await connect(env.tcp, { username: 'bob', password: 'bobpw', clientId: 'bob' }, onTestFinished)
    const got = collect(bob)
    await bob.subscribeAsync('shared/#', { qos: 1 })
    const alice = await connect(env.tcp, { username: 'alice', password: 'alicepw', clientId: 'alice' }, onTestFinished)
    // alice may not write shared/ yet: her publish is acknowledged and dropped
    await alice.publishAsync('shared/1', 'before', { qos: 1 })
    const r1 = await api(env, 'POST', '/api/v1/acl/rules', { auth: BASIC, body: { kind: 'topic', user: 'alice', access: 'write', topic: 'shared/#' } })
    expect(r1.status).toBe(201)
    expect(r1.json).toEqual({ id: expect.stringMatching(/^[0-9a-f]{16}$/), kind: 'topic', user: 'alice', access: 'write', topic: 'shared/#' })
    // written, but bob may not read it yet
    await alice.publishAsync('shared/2', 'unread', { qos: 1 })
    const r2 = await api(env, 'POST', '/api/v1/acl/rules', { auth: BASIC, body: { kind: 'pattern', access: 'read', topic: 'shared/%u/#' } })
    const r3 = await api(env, 'POST', '/api/v1/acl/rules', { auth: BASIC, body: { kind: 'topic', user: 'bob', access: 'read', topic: 'shared/#' } })
    expect([r2.status, r3.status]).toEqual([201, 201])
    expect((await api(env, 'POST', '/api/v1/acl/rules', { auth: BASIC, body: { kind: 'topic', user: 'bob', access: 'read', topic: 'shared/#' } })).json.error.code).toBe('MIDGE_ERR_ADMIN_RULE_EXISTS')
    // mosquitto_pub as alice now reaches bob's existing subscription
    const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(env.b.port('tcp')), '-u', 'alice', '-P', 'alicepw', '-t', 'shared/3', '-m', 'after', '-q', '1'])
    expect(pub.code).toBe(0)
    expect(await got.take(1)).toEqual([{ topic: 'shared/3', payload: 'after', qos: 1, retain: false, dup: false }])
    expect(await readFile(join(env.dir, 'acl'), 'utf8')).toBe('# rules\nuser alice\ntopic readwrite alice/#\ntopic write shared/#\n\npattern read shared/%u/#\n\nuser bob\ntopic read shared/#\n')
    const listed = (await api(env, 'GET', '/api/v1/acl/rules', { auth: BASIC })).json.rules
    expect(listed.map((r: any) => `${r.kind}:${r.user}:${r.access}:${r.topic}`)).toEqual(['topic:alice:readwrite:alice/#', 'topic:alice:write:shared/#', 'pattern:null:read:shared/%u/#', 'topic:bob:read:shared/#'])
    expect((await api(env, 'GET', '/api/v1/acl/rules?user=bob', { auth: BASIC })).json.rules.map((r: any) => r.topic)).toEqual(['shared/#'])
    // removing bob's rule stops delivery at once (the pattern still lets him read shared/bob/...)
    expect((await api(env, 'DELETE', `/api/v1/acl/rules/${r3.json.id as string}`, { auth: BASIC })).status).toBe(204)
    await alice.publishAsync('shared/4', 'gone', { qos: 1 })
    await alice.publishAsync('shared/bob/5', 'mine', { qos: 1 })
    expect((await got.take(2)).map(m => m.topic)).toEqual(['shared/3', 'shared/bob/5'])

    // deleting a user removes their ACL section too
    await api(env, 'DELETE', '/api/v1/users/bob', { auth: BASIC })
    expect(await readFile(join(env.dir, 'acl'), 'utf8')).toBe('# rules\nuser alice\ntopic readwrite alice/#\ntopic write shared/#\n\npattern read shared/%u/#\n')
  })

  test('Debian mosquitto reads the files the API wrote: same users, same rules', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    await api(env, 'POST', '/api/v1/users', { auth: BASIC, body: { username: 'dave', password: 'davepw' } })
    await api(env, 'POST', '/api/v1/users', { auth: BASIC, body: { username: 'erin', password: 'erinpw' } })
    await api(env, 'PATCH', '/api/v1/users/erin', { auth: BASIC, body: { disabled: true } })
    await api(env, 'POST', '/api/v1/acl/rules', { auth: BASIC, body: { kind: 'topic', user: 'dave', access: 'readwrite', topic: 'dave/#' } })
    const port = await freePort()
    const conf = join(env.dir, 'mosquitto.conf')
    await writeFile(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${env.dir}/passwd\nacl_file ${env.dir}/acl\nlog_dest stderr\n`)
    const m = await spawnMosquitto(conf)
    onTestFinished(() => m.stop())
    const url = `mqtt://127.0.0.1:${port}`
    expect(await mqttRefusal(url, 'erin', 'erinpw')).toBe(5)
    const dave = await connect(url, { username: 'dave', password: 'davepw', clientId: 'dave' }, onTestFinished)
    await dave.subscribeAsync('#', { qos: 1 })
    const next = nextMessage(dave)
    await dave.publishAsync('other/x', 'no', { qos: 1 })
    await dave.publishAsync('dave/x', 'yes', { qos: 1 })
    const [topic, payload] = await next
    expect([topic, payload.toString()]).toEqual(['dave/x', 'yes'])
  })

  test('clients: listed with user, address, listener, since, subscriptions and queue; kicked at once', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const before = Date.now()
    const c = await connect(env.ws, { username: 'alice', password: 'alicepw', clientId: 'alice-ws', keepalive: 30 }, onTestFinished)
    await c.subscribeAsync({ 'alice/in/#': { qos: 1 }, 'alice/x': { qos: 0 } })
    const list = (await api(env, 'GET', '/api/v1/clients', { auth: 'Bearer midge_readonly' })).json.clients
    expect(list).toHaveLength(1)
    const row = list[0]
    expect(row).toEqual({
      clientId: 'alice-ws',
      username: 'alice',
      address: '127.0.0.1',
      port: expect.any(Number),
      listener: 'ws:0',
      connectedSince: expect.any(String),
      cleanSession: true,
      keepalive: 30,
      protocolVersion: 4,
      sessionExpiryInterval: null,
      subscriptions: [{ topic: 'alice/in/#', qos: 1 }, { topic: 'alice/x', qos: 0 }],
      queuedMessages: 0
    })
    expect(Date.parse(row.connectedSince)).toBeGreaterThanOrEqual(before - 1000)
    expect(Date.parse(row.connectedSince)).toBeLessThanOrEqual(Date.now())
    expect((await api(env, 'GET', '/api/v1/clients/alice-ws', { auth: BASIC })).json.clientId).toBe('alice-ws')

    // a second client over TCP, then kick it: its connection closes, and the table no longer has it
    const victim = await connect(env.tcp, { username: 'alice', password: 'alicepw', clientId: 'msub' }, onTestFinished)
    const victimClosed = whenClosed(victim)
    const stats = (await api(env, 'GET', '/api/v1/stats', { auth: BASIC })).json
    expect(stats.clientsConnected).toBe(2)
    expect(stats.listeners).toEqual([{ id: 'tcp:0', transport: 'tcp', port: env.b.port('tcp'), connections: 1 }, { id: 'ws:0', transport: 'ws', port: env.b.port('ws'), connections: 1 }])
    const kicked = await api(env, 'DELETE', '/api/v1/clients/msub', { auth: 'Bearer midge_readwrite' })
    expect(kicked.status).toBe(204)
    await victimClosed
    expect((await api(env, 'GET', '/api/v1/clients', { auth: BASIC })).json.clients.map((x: any) => x.clientId)).toEqual(['alice-ws'])
    expect((await api(env, 'DELETE', '/api/v1/clients/msub', { auth: BASIC })).json.error.code).toBe('MIDGE_ERR_ADMIN_CLIENT_NOT_FOUND')
    // ids with '/' travel percent-encoded
    const odd = await connect(env.tcp, { username: 'alice', password: 'alicepw', clientId: 'a/b c' }, onTestFinished)
    const oddClosed = whenClosed(odd)
    expect((await api(env, 'DELETE', `/api/v1/clients/${encodeURIComponent('a/b c')}`, { auth: BASIC })).status).toBe(204)
    await oddClosed
  })

  test('retained messages: listed by filter (text or base64), deleted for real', async ({ onTestFinished }) => {
    const env = await setup(onTestFinished)
    const port = String(env.b.port('tcp'))
    const pub = (t: string, m: string) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'alicepw', '-t', t, '-m', m, '-r', '-q', '1'])
    for (const [t, m] of [['alice/a', 'one'], ['alice/b/c', 'two'], ['alice/z', 'three']]) expect((await pub(t!, m!)).code).toBe(0)
    const alice = await connect(env.tcp, { username: 'alice', password: 'alicepw', clientId: 'alice-bin' }, onTestFinished)
    await alice.publishAsync('alice/bin', Buffer.from([0xff, 0x00, 0x01]), { qos: 1, retain: true })
    const all = (await api(env, 'GET', `/api/v1/retained?filter=${encodeURIComponent('alice/#')}`, { auth: BASIC })).json
    expect(all).toEqual({
      filter: 'alice/#',
      truncated: false,
      messages: [
        { topic: 'alice/a', qos: 1, bytes: 3, payload: 'one', encoding: 'utf8' },
        { topic: 'alice/b/c', qos: 1, bytes: 3, payload: 'two', encoding: 'utf8' },
        { topic: 'alice/bin', qos: 1, bytes: 3, payload: '/wAB', encoding: 'base64' },
        { topic: 'alice/z', qos: 1, bytes: 5, payload: 'three', encoding: 'utf8' }
      ]
    })
    // a v5 retained message is listed with its properties
    expect((await run('mosquitto_pub', ['-V', '5', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'alicepw', '-t', 'alice/v5', '-m', 'x', '-r', '-q', '1',
      '-D', 'publish', 'content-type', 'text/plain', '-D', 'publish', 'user-property', 'k', 'v'])).code).toBe(0)
    expect((await api(env, 'GET', '/api/v1/retained?filter=alice/v5', { auth: BASIC })).json.messages).toEqual([
      { topic: 'alice/v5', qos: 1, bytes: 1, payload: 'x', encoding: 'utf8', properties: { contentType: 'text/plain', userProperties: { k: 'v' } } }
    ])
    expect((await api(env, 'DELETE', '/api/v1/retained?topic=alice/v5', { auth: BASIC })).status).toBe(204)
    expect((await api(env, 'GET', `/api/v1/retained?filter=${encodeURIComponent('alice/+')}&limit=2`, { auth: BASIC })).json.truncated).toBe(true)
    expect((await api(env, 'DELETE', `/api/v1/retained?topic=${encodeURIComponent('alice/b/c')}`, { auth: BASIC })).status).toBe(204)
    expect((await api(env, 'GET', `/api/v1/retained?filter=${encodeURIComponent('alice/b/#')}`, { auth: BASIC })).json.messages).toEqual([])
    // a new subscriber gets the others and not the deleted one
    // -C 3: had the deleted one come too, one of the three expected topics would be missing
    const sub = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'alicepw', '-t', 'alice/#', '-v', '-C', '3'])
    expect(sub.code).toBe(0)
    expect(sub.stdout.trim().split('\n').map(l => l.split(' ')[0]).sort()).toEqual(['alice/a', 'alice/bin', 'alice/z'])
  })
})

test('the operations of one session, start to end, do not leave stray clients (smoke for stats)', async ({ onTestFinished }) => {
  const env = await setup(onTestFinished)
  const s = await api(env, 'GET', '/api/v1/stats', { auth: BASIC })
  expect(s.json).toMatchObject({ clientsConnected: 0, listeners: expect.any(Array) })
  expect(typeof s.json.publishReceived).toBe('number')
  expect(typeof s.json.uptimeSeconds).toBe('number')
  const root = await api(env, 'GET', '/api/v1', { auth: 'Bearer midge_readonly' })
  expect(root.json).toEqual({ version: expect.any(String), api: 'v1', scope: 'read' })
  const c: MqttClient = await connect(env.tcp, { username: 'alice', password: 'alicepw', clientId: 'x1' }, onTestFinished)
  expect((await api(env, 'GET', '/api/v1/stats', { auth: BASIC })).json.clientsConnected).toBe(1)
  await c.endAsync()
})
