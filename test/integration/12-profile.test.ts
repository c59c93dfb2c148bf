/**
 * config/test-mosquitto-org.conf, the stand-in for test.mosquitto.org: every port with the right and the wrong
 * credentials and certificates, the bare-`#` rule, the CSR page end to end with openssl and mosquitto_sub.
 * The file is used as shipped, except: its ports become `listener 0 127.0.0.1` (mapped back by listener order),
 * `certs/` and `config/` point at a temp dir and the repository, and sys_interval is 1. The certificates are made
 * with the README's `midge certs` commands, run in-process.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { MqttClient } from 'mqtt'
import { buildProgram } from '../../src/cli/program.js'
import { startTestBroker, type TestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { connect, attempt } from '../helpers/mqtt.js'

const run = promisify(execFile)
const REPO = resolve(import.meta.dirname, '../..')
const PROFILE = join(REPO, 'config/test-mosquitto-org.conf')
let certs: string

beforeAll(async () => {
  certs = mkdtempSync(join(tmpdir(), 'midge-profile-certs-'))
  const midge = async (...args: string[]): Promise<void> => {
    const write = process.stdout.write
    process.stdout.write = (() => true) as typeof process.stdout.write // the commands print the files they wrote
    try { await buildProgram().exitOverride().parseAsync(args, { from: 'user' }) } finally { process.stdout.write = write }
  }
  // the README's commands
  await midge('certs', 'ca', '--dir', certs, '--cn', 'Midge test CA')
  await midge('certs', 'server', '--dir', certs, '--host', 'localhost', '--host', '127.0.0.1')
  await midge('certs', 'server', '--dir', certs, '--name', 'expired', '--expired', '--host', 'localhost', '--host', '127.0.0.1')
  // a client certificate from a CA the profile does not trust
  const other = join(certs, 'other')
  await midge('certs', 'ca', '--dir', other, '--cn', 'Other CA')
  await midge('certs', 'client', 'mallory', '--dir', other)
})
afterAll(() => { if (certs) rmSync(certs, { recursive: true, force: true }) })

interface Profile { b: TestBroker, port: (n: number) => number }

/** Starts the profile on ephemeral ports; `port(1883)` is where the file's `listener 1883` ended up. */
async function startProfile (onFinished: (fn: () => Promise<void>) => void, edit: (text: string) => string = t => t): Promise<Profile> {
  let text = readFileSync(PROFILE, 'utf8')
  const ports = [...text.matchAll(/^listener (\d+)$/gm)].map(m => Number(m[1]))
  expect(ports).toEqual([1883, 1884, 8883, 8884, 8885, 8887, 8080, 8081, 8090, 8091])
  text = text.replace(/^listener \d+$/gm, 'listener 0 127.0.0.1')
    .replace(/^(\w+ )certs\//gm, `$1${certs}/`)
    .replace(/^(\w+ )config\//gm, `$1${REPO}/config/`)
    .replace(/^sys_interval \d+$/m, 'sys_interval 1')
  const b = await startTestBroker(edit(text))
  onFinished(() => b.close())
  return {
    b,
    port: n => {
      const i = ports.indexOf(n)
      if (i < 0) throw new Error(`no listener ${n} in the profile`)
      return b.broker.bound[i]!.address.port
    }
  }
}

const ca = (): Buffer => readFileSync(join(certs, 'ca.crt'))

/** Publishes on `pub` and resolves with what `sub` received on that topic (or 'nothing' after a barrier). */
async function roundTrip (pub: MqttClient, sub: MqttClient, topic: string, fencer = pub): Promise<string> {
  await sub.subscribeAsync(topic, { qos: 1 })
  const got = new Promise<string>(resolve => sub.on('message', (t, p) => { if (t === topic) resolve(p.toString()) }))
  await pub.publishAsync(topic, `hello ${topic}`, { qos: 1 })
  // barrier: pub's PUBACK came after its message was routed; a later publish (by a client that may write) to a
  // topic the subscriber reads arrives after anything pub's message would have delivered
  const fence = `${topic}/fence`
  await sub.subscribeAsync(fence, { qos: 1 })
  const fenced = new Promise<string>(resolve => sub.on('message', t => { if (t === fence) resolve('nothing') }))
  return Promise.race([got, (async () => { await fencer.publishAsync(fence, 'f', { qos: 1 }); return fenced })()])
}

test.concurrent('1883: anonymous MQTT; the bare # is refused (SUBACK 0x80), other filters and $SYS are not', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const raw = await RawClient.connect(port(1883))
  onTestFinished(() => raw.end())
  expect((await raw.connectMqtt({ clientId: 'anon-1883' })).returnCode).toBe(0)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }, { topic: 'a/#', qos: 1 }, { topic: '+', qos: 0 }, { topic: '$SYS/#', qos: 0 }] })
  expect((await raw.next('suback') as { granted: number[] }).granted).toEqual([0x80, 1, 0, 0])
  const sys = await raw.next('publish') as { topic: string }
  expect(sys.topic.startsWith('$SYS/broker/')).toBe(true)
  const a = await connect(`mqtt://127.0.0.1:${port(1883)}`, { clientId: 'a1883' }, onTestFinished)
  expect(await roundTrip(a, a, 'open/1883')).toBe('hello open/1883')
})

test.concurrent('1884: rw reads and writes, ro only reads, wo only writes; no or wrong credentials get CONNACK 5', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const url = `mqtt://127.0.0.1:${port(1884)}`
  expect(await attempt(url, { clientId: 'anon' })).toBe('connack 5')
  expect(await attempt(url, { clientId: 'bad', username: 'rw', password: 'wrong' })).toBe('connack 5')
  expect(await attempt(url, { clientId: 'nobody', username: 'nobody', password: 'readwrite' })).toBe('connack 5')
  const rw = await connect(url, { clientId: 'rw', username: 'rw', password: 'readwrite' }, onTestFinished)
  const ro = await connect(url, { clientId: 'ro', username: 'ro', password: 'readonly' }, onTestFinished)
  const wo = await connect(url, { clientId: 'wo', username: 'wo', password: 'writeonly' }, onTestFinished)
  expect(await roundTrip(rw, rw, 'auth/rw')).toBe('hello auth/rw')
  expect(await roundTrip(rw, ro, 'auth/ro-reads')).toBe('hello auth/ro-reads')
  expect(await roundTrip(wo, rw, 'auth/wo-writes')).toBe('hello auth/wo-writes')
  // ro's publishes are acknowledged and dropped; wo receives nothing
  const roPub = new Promise<string>(resolve => rw.on('message', (t, p) => { if (t === 'auth/ro-writes') resolve(p.toString()) }))
  await rw.subscribeAsync('auth/ro-writes', { qos: 1 })
  await ro.publishAsync('auth/ro-writes', 'should not arrive', { qos: 1 })
  await rw.publishAsync('auth/ro-writes', 'from rw', { qos: 1 })
  expect(await roPub).toBe('from rw')
  const woGot: string[] = []
  wo.on('message', t => woGot.push(t))
  await wo.subscribeAsync('auth/#', { qos: 1 })
  await rw.publishAsync('auth/for-wo', 'x', { qos: 1 })
  await wo.publishAsync('auth/for-wo', 'y', { qos: 1 }) // QoS 1 round trip: routing of rw's publish is done
  expect(woGot).toEqual([])
  // $SYS is readable where the ACL grants it (ro: `topic read $SYS/#`), and only there
  const sys = new Promise<string>(resolve => ro.on('message', (t, p) => { if (t === '$SYS/broker/version') resolve(p.toString()) }))
  await ro.subscribeAsync('$SYS/broker/version', { qos: 0 })
  expect(await sys).toMatch(/^midge version /)
  await wo.subscribeAsync('$SYS/broker/version', { qos: 0 })
  await wo.publishAsync('auth/for-wo', 'z', { qos: 1 })
  await ro.subscribeAsync('$SYS/broker/uptime', { qos: 0 }) // one more round trip through the broker
  expect(woGot).toEqual([])
  // authenticated users may subscribe to the bare #
  const granted = await rw.subscribeAsync('#', { qos: 0 })
  expect(granted[0]!.qos).toBe(0)
})

test.concurrent('8883: TLS with the profile\'s CA; an untrusting client and a plain-TCP client fail', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const c = await connect(`mqtts://127.0.0.1:${port(8883)}`, { clientId: 'tls', ca: ca() }, onTestFinished)
  expect(await roundTrip(c, c, 'tls/8883')).toBe('hello tls/8883')
  expect(await attempt(`mqtts://127.0.0.1:${port(8883)}`, { clientId: 'untrusting' })).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  const raw = await RawClient.connect(port(8883))
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'plain', keepalive: 60 })
  await raw.closed
  expect(raw.packets.filter(p => p.cmd === 'connack')).toEqual([])
})

test.concurrent('8884: a client certificate from the profile\'s CA is required', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const url = `mqtts://127.0.0.1:${port(8884)}`
  // a certificate signed by the profile's CA, made with midge certs (the CSR page is tested below)
  const dir = mkdtempSync(join(tmpdir(), 'midge-client-'))
  onTestFinished(async () => rmSync(dir, { recursive: true, force: true }))
  const ca = { cert: readFileSync(join(certs, 'ca.crt'), 'utf8'), key: readFileSync(join(certs, 'ca.key'), 'utf8') }
  const { createClientCert } = await import('../../src/cli/certs.js')
  const alice = createClientCert(ca, 'alice')
  const c = await connect(url, { clientId: 'cert', ca: ca.cert, cert: alice.cert, key: alice.key }, onTestFinished)
  expect(await roundTrip(c, c, 'tls/8884')).toBe('hello tls/8884')
  const none = await attempt(url, { clientId: 'nocert', ca: ca.cert })
  expect(typeof none).toBe('string')
  expect(none).toMatch(/^(ECONNRESET|EPIPE|closed|ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED)$/)
  const rogue = await attempt(url, {
    clientId: 'rogue', ca: ca.cert, cert: readFileSync(join(certs, 'other', 'mallory.crt')), key: readFileSync(join(certs, 'other', 'mallory.key'))
  })
  expect(typeof rogue).toBe('string')
  expect(rogue).toMatch(/^(ECONNRESET|EPIPE|closed|ERR_SSL_TLSV1_ALERT_UNKNOWN_CA)$/)
})

test.concurrent('8885: TLS and a password: rw/readwrite connects, a wrong password gets CONNACK 5', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const url = `mqtts://127.0.0.1:${port(8885)}`
  const c = await connect(url, { clientId: 'tls-rw', ca: ca(), username: 'rw', password: 'readwrite' }, onTestFinished)
  expect(await roundTrip(c, c, 'tls/8885')).toBe('hello tls/8885')
  expect(await attempt(url, { clientId: 'tls-bad', ca: ca(), username: 'rw', password: 'readonly' })).toBe('connack 5')
  expect(await attempt(url, { clientId: 'tls-anon', ca: ca() })).toBe('connack 5')
})

test.concurrent('8887: the server certificate has expired: a verifying client refuses it, one that does not check connects', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const url = `mqtts://127.0.0.1:${port(8887)}`
  expect(await attempt(url, { clientId: 'careful', ca: ca() })).toBe('CERT_HAS_EXPIRED')
  const c = await connect(url, { clientId: 'careless', ca: ca(), rejectUnauthorized: false }, onTestFinished)
  expect(await roundTrip(c, c, 'tls/8887')).toBe('hello tls/8887')
  // mosquitto_pub says so too
  const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port(8887)), '--cafile', join(certs, 'ca.crt'), '-t', 't', '-m', 'm'])
    .then(() => 'connected', (err: { stderr: string }) => err.stderr)
  expect(r).toBe('Error: A TLS error occurred.\n')
  const sclient = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port(8887)}`, '-CAfile', join(certs, 'ca.crt'), '-verify_return_error'], { timeout: 10_000 })
    .then(x => x.stdout + x.stderr, (err: { stdout: string, stderr: string }) => err.stdout + err.stderr)
  expect(sclient).toContain('certificate has expired')
})

test.concurrent('8080 and 8081: anonymous MQTT over WebSocket and secure WebSocket; the bare # is refused there too', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const ws = await connect(`ws://127.0.0.1:${port(8080)}/mqtt`, { clientId: 'ws' }, onTestFinished)
  expect(await roundTrip(ws, ws, 'ws/8080')).toBe('hello ws/8080')
  const refused = await ws.subscribeAsync('#', { qos: 0 }).then(g => g[0]!.qos, (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0])
  expect(refused).toBe(128)
  const wss = await connect(`wss://127.0.0.1:${port(8081)}/mqtt`, { clientId: 'wss', ca: ca() }, onTestFinished)
  expect(await roundTrip(wss, ws, 'wss/8081')).toBe('hello wss/8081')
  expect(await attempt(`wss://127.0.0.1:${port(8081)}/mqtt`, { clientId: 'wss-untrusting' })).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/)
})

test.concurrent('8090 and 8091: WebSocket with a password; anonymous and wrong passwords get CONNACK 5', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const ws = `ws://127.0.0.1:${port(8090)}/mqtt`
  const wss = `wss://127.0.0.1:${port(8091)}/mqtt`
  expect(await attempt(ws, { clientId: 'ws-anon' })).toBe('connack 5')
  expect(await attempt(ws, { clientId: 'ws-bad', username: 'ro', password: 'readwrite' })).toBe('connack 5')
  expect(await attempt(wss, { clientId: 'wss-anon', ca: ca() })).toBe('connack 5')
  expect(await attempt(wss, { clientId: 'wss-bad', ca: ca(), username: 'wo', password: 'nope' })).toBe('connack 5')
  const rw = await connect(ws, { clientId: 'ws-rw', username: 'rw', password: 'readwrite' }, onTestFinished)
  const ro = await connect(wss, { clientId: 'wss-ro', ca: ca(), username: 'ro', password: 'readonly' }, onTestFinished)
  expect(await roundTrip(rw, ro, 'wsauth/1')).toBe('hello wsauth/1')
  expect(await roundTrip(ro, rw, 'wsauth/2', rw)).toBe('nothing') // ro may not write
})

test.concurrent('the profile\'s limits: message_size_limit 1000000, max_inflight_messages 10', async ({ onTestFinished }) => {
  const { b, port } = await startProfile(onTestFinished)
  expect(b.broker.config.limits.messageSizeLimit).toBe(1_000_000)
  expect(b.broker.config.limits.maxInflightMessages).toBe(10)
  const c = await connect(`mqtt://127.0.0.1:${port(1883)}`, { clientId: 'big' }, onTestFinished)
  expect(await roundTrip(c, c, 'size/ok').then(() => 'ok')).toBe('ok')
  const raw = await RawClient.connect(port(1883))
  await raw.connectMqtt({ clientId: 'too-big' })
  raw.send({ cmd: 'publish', topic: 'size/big', payload: Buffer.alloc(1_000_001), qos: 1, messageId: 1 })
  await raw.closed
  expect(raw.packets.filter(p => p.cmd === 'puback')).toEqual([])
})

test.concurrent('the CSR page: CA download, a CSR from openssl req signed, and the certificate works on 8884 with mosquitto_sub', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished)
  const http = `http://127.0.0.1:${port(8080)}`
  const page = await fetch(`${http}/ssl/`)
  expect(page.status).toBe(200)
  expect(await page.text()).toContain('<form method="post" action="csr">')
  const caRes = await fetch(`${http}/ssl/ca.crt`)
  expect(caRes.status).toBe(200)
  expect(await caRes.text()).toBe(readFileSync(join(certs, 'ca.crt'), 'utf8'))

  const dir = mkdtempSync(join(tmpdir(), 'midge-csr-'))
  onTestFinished(async () => rmSync(dir, { recursive: true, force: true }))
  await run('openssl', ['genrsa', '-out', join(dir, 'client.key'), '2048'])
  await run('openssl', ['req', '-new', '-key', join(dir, 'client.key'), '-out', join(dir, 'client.csr'), '-subj', '/CN=csr-user/O=Test'])
  // as the page's form posts it
  const res = await fetch(`${http}/ssl/csr`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csr: readFileSync(join(dir, 'client.csr'), 'utf8') }).toString()
  })
  expect(res.status).toBe(200)
  expect(res.headers.get('content-disposition')).toBe('attachment; filename="client.crt"')
  writeFileSync(join(dir, 'client.crt'), await res.text())
  const verify = await run('openssl', ['verify', '-CAfile', join(certs, 'ca.crt'), '-purpose', 'sslclient', join(dir, 'client.crt')])
  expect(verify.stdout.trim()).toBe(`${join(dir, 'client.crt')}: OK`)
  const subject = await run('openssl', ['x509', '-in', join(dir, 'client.crt'), '-noout', '-subject'])
  expect(subject.stdout.trim()).toBe('subject=CN = csr-user, O = Test')

  // the certificate connects to 8884, with Debian's mosquitto clients
  const tls = ['-h', '127.0.0.1', '-p', String(port(8884)), '--cafile', join(certs, 'ca.crt'), '--cert', join(dir, 'client.crt'), '--key', join(dir, 'client.key')]
  const sub = run('mosquitto_sub', [...tls, '-t', 'csr/test', '-C', '1', '-W', '10', '-q', '1', '-i', 'csr-sub'])
  const watcher = await connect(`mqtt://127.0.0.1:${port(1883)}`, { clientId: 'csr-watch' }, onTestFinished)
  // wait until the mosquitto_sub client has subscribed ($SYS/broker/subscriptions/count: the watcher's and its) before publishing
  await watcher.subscribeAsync('$SYS/broker/subscriptions/count', { qos: 0 })
  await new Promise<void>(resolve => watcher.on('message', (_t, p) => { if (Number(p.toString()) >= 2) resolve() }))
  await run('mosquitto_pub', [...tls, '-t', 'csr/test', '-m', 'signed by the page', '-q', '1', '-i', 'csr-pub'])
  expect((await sub).stdout).toBe('signed by the page\n')
  // without it, no connection
  const none = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port(8884)), '--cafile', join(certs, 'ca.crt'), '-t', 'csr/test', '-m', 'x'])
    .then(() => 'connected', () => 'refused')
  expect(none).toBe('refused')
})

test.concurrent('the CSR page refuses what it cannot sign, and limits signings per address', async ({ onTestFinished }) => {
  const { port } = await startProfile(onTestFinished, t => t.replace('http_csr_rate_limit 10', 'http_csr_rate_limit 3'))
  const url = `http://127.0.0.1:${port(8080)}/ssl/csr`
  const dir = mkdtempSync(join(tmpdir(), 'midge-csr-'))
  onTestFinished(async () => rmSync(dir, { recursive: true, force: true }))
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'ec.key'), '-out', join(dir, 'ec.csr'), '-subj', '/CN=ec'])
  const post = (body: string): Promise<Response> => fetch(url, { method: 'POST', body })
  const ec = await post(readFileSync(join(dir, 'ec.csr'), 'utf8'))
  expect([ec.status, await ec.text()]).toEqual([400, 'Error: only RSA keys are supported: make the key with "openssl genrsa -out client.key 2048".\n'])
  const junk = await post('hello')
  expect(junk.status).toBe(400)
  await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ok.key'), '-out', join(dir, 'ok.csr'), '-subj', '/CN=ok'])
  const third = await post(readFileSync(join(dir, 'ok.csr'), 'utf8')) // raw PEM body, as curl --data-binary sends it
  expect(third.status).toBe(200)
  expect(await third.text()).toMatch(/^-----BEGIN CERTIFICATE-----/)
  const fourth = await post(readFileSync(join(dir, 'ok.csr'), 'utf8'))
  expect(fourth.status).toBe(429)
  expect(Number(fourth.headers.get('retry-after'))).toBeGreaterThan(3000)
  expect((await fetch(url)).status).toBe(405)
  // the page exists only where http_csr_signing is set
  expect((await fetch(`http://127.0.0.1:${port(8090)}/ssl/`)).status).toBe(404)
})

test.concurrent('the CSR page\'s CA may not be trusted by a listener that makes user names from certificates', async () => {
  const conf = readFileSync(PROFILE, 'utf8').replace('require_certificate true\n', 'require_certificate true\nuse_identity_as_username true\n')
  const { loadConfig } = await import('../../src/config/load.js')
  expect(() => loadConfig({ configText: conf, configName: 'p.conf' })).toThrow(/use_identity_as_username\/use_subject_as_username trusts the CA of the CSR signing page \(certs\/ca\.crt\)/)
})
