/**
 * TLS and secure WebSocket with certificates made at test time (test/helpers/certs.ts): mosquitto_pub/sub and
 * paho with and without client certificates, MQTT.js over WSS, use_identity_as_username / use_subject_as_username
 * with an ACL, and start-up errors for bad TLS configuration (child process: `npm run build` first).
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { once } from 'node:events'
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import tls from 'node:tls'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { startTestBroker } from '../helpers/start-broker.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'
import { createServerCert, signClientCsr } from '../../src/cli/certs.js'
import { freePort, midge, run, spawnMidge, spawnMosquitto, mosquittoSub, PYTHON } from '../helpers/processes.js'
import { subackCodes, nextMessage, nextError } from '../helpers/mqtt.js'

let certs: TestCerts
beforeAll(() => { certs = makeTestCerts() }, 60_000) // RSA key generation: slow on a loaded machine
afterAll(() => certs.remove())

const tlsConf = (extra = '') => `listener 0 127.0.0.1\ncafile ${certs.ca}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\n${extra}`

function encryptedKey (c: TestCerts): string {
  const f = join(c.dir, 'encrypted.key')
  const pem = createPrivateKey(readFileSync(c.server.key)).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' })
  writeFileSync(f, pem, { mode: 0o600 })
  return f
}

const lastLine = (s: string) => s.trim().split('\n').filter(l => !l.startsWith('Client ') && l !== '').at(-1)

test('mosquitto_pub/sub over TLS, server certificate only (--cafile)', async ({ onTestFinished }) => {
  const b = await startTestBroker(tlsConf('allow_anonymous true\n'))
  onTestFinished(() => b.close())
  const common = ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', certs.ca, '-t', 'tls/test']
  const sub = mosquittoSub(common)
  await sub.ready
  const pub = await run('mosquitto_pub', [...common, '-m', 'over tls', '-q', '1'])
  expect([pub.code, pub.stderr]).toEqual([0, ''])
  const r = await sub.done
  expect([r.code, lastLine(r.stdout)]).toEqual([0, 'over tls'])
})

test('require_certificate: mosquitto clients with a CA-signed client certificate connect; without one, or from another CA, they do not', async ({ onTestFinished }) => {
  const b = await startTestBroker(tlsConf('require_certificate true\nallow_anonymous true\n'))
  onTestFinished(() => b.close())
  const base = ['-h', '127.0.0.1', '-p', String(b.port('tls')), '--cafile', certs.ca, '-t', 'cert/test']
  const sub = mosquittoSub([...base, '--cert', certs.alice.cert, '--key', certs.alice.key])
  await sub.ready
  const pub = await run('mosquitto_pub', [...base, '--cert', certs.bob.cert, '--key', certs.bob.key, '-m', 'with cert', '-q', '1'])
  expect([pub.code, pub.stderr]).toEqual([0, ''])
  expect(lastLine((await sub.done).stdout)).toBe('with cert')
  const none = await run('mosquitto_pub', [...base, '-m', 'x'])
  expect(none.code).not.toBe(0)
  const rogue = await run('mosquitto_pub', [...base, '--cert', certs.rogue.cert, '--key', certs.rogue.key, '-m', 'x'])
  expect(rogue.code).not.toBe(0)
})

test('paho (Debian python3-paho-mqtt) over TLS with tls_set, with and without a client certificate', async ({ onTestFinished }) => {
  const open = await startTestBroker(tlsConf('allow_anonymous true\n'))
  onTestFinished(() => open.close())
  const strict = await startTestBroker(tlsConf('require_certificate true\nallow_anonymous true\n'))
  onTestFinished(() => strict.close())
  const script = `
import sys, paho.mqtt.client as mqtt
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3] or None, sys.argv[4] or None
got = []
c = mqtt.Client(client_id="paho-tls", protocol=mqtt.MQTTv311)
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
c.on_connect = lambda c, u, f, rc: (print("connack", rc), c.subscribe("paho/tls", 1))
c.on_subscribe = lambda c, u, mid, q: c.publish("paho/tls", "hello from paho", 1)
def on_message(c, u, m):
    print(m.topic, m.payload.decode(), m.qos); c.disconnect()
c.on_message = on_message
c.connect("localhost", port, 30)
c.loop_forever(timeout=5)
`
  const py = (port: number, cert = '', key = '') => run(PYTHON, ['-c', script, String(port), certs.ca, cert, key], { timeoutMs: 15_000 })
  const a = await py(open.port('tls'))
  expect([a.code, a.stdout]).toEqual([0, 'connack 0\npaho/tls hello from paho 1\n'])
  const b = await py(strict.port('tls'), certs.alice.cert, certs.alice.key)
  expect([b.code, b.stdout]).toEqual([0, 'connack 0\npaho/tls hello from paho 1\n'])
  const c = await py(strict.port('tls'))
  expect(c.code).not.toBe(0) // handshake refused: no client certificate
  expect(c.stderr).toMatch(/SSL|certificate|Connection reset|EOF/i)
})

test('MQTT.js over secure WebSocket (protocol websockets + certfile), with and without a client certificate', async ({ onTestFinished }) => {
  const b = await startTestBroker(`${tlsConf('allow_anonymous true\nprotocol websockets\n')}`)
  onTestFinished(() => b.close())
  expect(b.url('wss')).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/)
  const url = b.url('wss').replace('127.0.0.1', 'localhost')
  const c = await mqtt.connectAsync(url, { clientId: 'wss1', ca: readFileSync(certs.ca), reconnectPeriod: 0 })
  onTestFinished(() => c.endAsync())
  const got = nextMessage(c)
  await c.subscribeAsync('wss/t', { qos: 1 })
  await c.publishAsync('wss/t', 'secure ws', { qos: 1 })
  const [topic, payload, packet] = await got
  expect([topic, payload.toString(), packet.qos]).toEqual(['wss/t', 'secure ws', 1])

  const strict = await startTestBroker(`${tlsConf('require_certificate true\nuse_identity_as_username true\nprotocol websockets\n')}`)
  onTestFinished(() => strict.close())
  const surl = strict.url('wss').replace('127.0.0.1', 'localhost')
  const d = await mqtt.connectAsync(surl, { clientId: 'wss2', ca: readFileSync(certs.ca), cert: readFileSync(certs.alice.cert), key: readFileSync(certs.alice.key), reconnectPeriod: 0 })
  onTestFinished(() => d.endAsync())
  expect(d.connected).toBe(true)
  const refused = mqtt.connect(surl, { clientId: 'wss3', ca: readFileSync(certs.ca), reconnectPeriod: 0, connectTimeout: 5000 })
  onTestFinished(() => { refused.end(true) })
  const err = await nextError(refused)
  expect(err.message).toMatch(/socket hang up|ECONNRESET|certificate|alert|closed/i)
})

test('use_identity_as_username: the certificate CN is the username for the ACL; CONNECT credentials and password_file are ignored', async ({ onTestFinished }) => {
  const acl = join(certs.dir, 'identity.acl')
  writeFileSync(acl, 'user alice\ntopic readwrite alice/#\nuser bob\ntopic read alice/#\n')
  const pw = join(certs.dir, 'unused.pw')
  writeFileSync(pw, '')
  const b = await startTestBroker(tlsConf(`require_certificate true\nuse_identity_as_username true\npassword_file ${pw}\nacl_file ${acl}\n`))
  onTestFinished(() => b.close())
  const opts = (who: 'alice' | 'bob') => ({ clientId: `${who}-dev`, ca: readFileSync(certs.ca), cert: readFileSync(certs[who].cert), key: readFileSync(certs[who].key), reconnectPeriod: 0 })
  const url = `mqtts://localhost:${b.port('tls')}`
  const bob = await mqtt.connectAsync(url, { ...opts('bob'), username: 'alice', password: 'ignored' }) // still bob
  onTestFinished(() => bob.endAsync())
  const alice = await mqtt.connectAsync(url, opts('alice'))
  onTestFinished(() => alice.endAsync())
  const got: string[] = []
  bob.on('message', t => got.push(t))
  await bob.subscribeAsync('#', { qos: 1 })
  const end = new Promise<void>(resolve => bob.on('message', t => { if (t === 'alice/end') resolve() }))
  await bob.publishAsync('alice/from-bob', 'x', { qos: 1 }) // bob may only read: dropped
  await alice.publishAsync('alice/temp', 'x', { qos: 1 })
  await alice.publishAsync('bob/temp', 'x', { qos: 1 }) // not alice's: dropped
  await alice.publishAsync('alice/end', 'x', { qos: 1 })
  await end
  expect(got).toEqual(['alice/temp', 'alice/end'])
})

test('use_subject_as_username: the RFC 2253 subject is the username', async ({ onTestFinished }) => {
  const acl = join(certs.dir, 'subject.acl')
  writeFileSync(acl, 'user CN=alice\ntopic readwrite subj/#\n')
  const b = await startTestBroker(tlsConf(`require_certificate true\nuse_subject_as_username true\nacl_file ${acl}\n`))
  onTestFinished(() => b.close())
  const c = await mqtt.connectAsync(`mqtts://localhost:${b.port('tls')}`, { clientId: 'subj', ca: readFileSync(certs.ca), cert: readFileSync(certs.alice.cert), key: readFileSync(certs.alice.key), reconnectPeriod: 0 })
  onTestFinished(() => c.endAsync())
  expect(await subackCodes(c, { 'subj/#': { qos: 1 } })).toEqual([1])
  const got = nextMessage(c)
  await c.publishAsync('other', 'dropped', { qos: 1 })
  await c.publishAsync('subj/a', 'kept', { qos: 1 })
  expect((await got)[0]).toBe('subj/a')
})

test('use_identity_as_username without require_certificate: a client without a certificate gets CONNACK 4', async ({ onTestFinished }) => {
  const b = await startTestBroker(tlsConf('use_identity_as_username true\n'))
  onTestFinished(() => b.close())
  const sock = tls.connect({ host: '127.0.0.1', port: b.port('tls'), ca: readFileSync(certs.ca), servername: 'localhost' })
  onTestFinished(() => { sock.destroy() })
  await once(sock, 'secureConnect')
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'n', keepalive: 60, username: 'alice', password: Buffer.from('pw') }))
  const [data] = await once(sock, 'data') as [Buffer]
  expect(data.subarray(0, 4)).toEqual(Buffer.from([0x20, 2, 0, 4]))
})

test('allow_expired_certificate true: an expired server certificate is served (with a warning); clients that check see it expired', async ({ onTestFinished }) => {
  const b = await startTestBroker(`listener 0 127.0.0.1\ncertfile ${certs.expired.cert}\nkeyfile ${certs.expired.key}\nallow_expired_certificate true\nallow_anonymous true\n`)
  onTestFinished(() => b.close())
  const checked = await run('mosquitto_pub', ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', certs.ca, '-t', 't', '-m', 'x'])
  expect(checked.code).not.toBe(0)
  expect(checked.stderr).toMatch(/A TLS error occurred/)
  // what the client sees: node's TLS check names the reason
  const strict = mqtt.connect(`mqtts://localhost:${b.port('tls')}`, { clientId: 'exp0', ca: readFileSync(certs.ca), reconnectPeriod: 0 })
  onTestFinished(() => { strict.end(true) })
  const err = await nextError(strict)
  expect(err.message).toBe('certificate has expired')
  const c = await mqtt.connectAsync(`mqtts://localhost:${b.port('tls')}`, { clientId: 'exp', rejectUnauthorized: false, reconnectPeriod: 0 })
  expect(c.connected).toBe(true)
  await c.endAsync()
})

test.each([
  ['a missing certfile', (c: TestCerts) => `certfile ${join(c.dir, 'nope.crt')}\nkeyfile ${c.server.key}\n`,
    (c: TestCerts) => `Error: unable to load certfile "${join(c.dir, 'nope.crt')}" for tls listener on port 0 (test.conf:1): no such file.`],
  ['a key that does not match the certificate', (c: TestCerts) => `certfile ${c.server.cert}\nkeyfile ${c.alice.key}\n`,
    (c: TestCerts) => `Error: keyfile "${c.alice.key}" does not match certfile "${c.server.cert}" (key values mismatch) for tls listener on port 0 (test.conf:1).`],
  ['an expired certificate', (c: TestCerts) => `certfile ${c.expired.cert}\nkeyfile ${c.expired.key}\n`,
    (c: TestCerts) => new RegExp(`^Error: certfile "${c.expired.cert}" expired on \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(renew it, or set allow_expired_certificate true on a test listener\\) for tls listener on port 0 \\(test.conf:1\\)\\.$`)],
  ['an encrypted key', (c: TestCerts) => `certfile ${c.server.cert}\nkeyfile ${encryptedKey(c)}\n`,
    (c: TestCerts) => `Error: keyfile "${join(c.dir, 'encrypted.key')}" is not a usable private key: it is encrypted; Midge needs an unencrypted key (protect it with chmod 600) for tls listener on port 0 (test.conf:1).`],
  ['a certfile that is not a certificate', (c: TestCerts) => `certfile ${c.server.key}\nkeyfile ${c.server.key}\n`,
    (c: TestCerts) => new RegExp(`^Error: certfile "${c.server.key}" is not a PEM certificate`)]
])('in-process start-up fails with one readable line for %s', async (_name, conf, message) => {
  const err = await startTestBroker(`listener 0 127.0.0.1\n${conf(certs)}`).then(b => { void b.close(); return undefined }, (e: Error & { exitCode?: number }) => e)
  expect(err).toBeDefined()
  expect(err!.exitCode).toBe(1)
  const m = message(certs)
  if (typeof m === 'string') expect(err!.message).toBe(m)
  else expect(err!.message).toMatch(m)
})

test('the daemon exits 1 with one line for a bad certificate, and starts with allow_expired_certificate', async () => {
  const conf = join(certs.dir, 'expired.conf')
  writeFileSync(conf, `listener 0 127.0.0.1\ncertfile ${certs.expired.cert}\nkeyfile ${certs.expired.key}\n`)
  const r = await midge(['-c', conf])
  expect(r.code).toBe(1)
  const errLines = r.stderr.trim().split('\n').filter(l => !l.startsWith('{'))
  expect(errLines).toHaveLength(1)
  expect(errLines[0]).toMatch(new RegExp(`^Error: certfile "${certs.expired.cert}" expired on .* for tls listener on port 0 \\(${conf}:1\\)\\.$`))
  writeFileSync(conf, `listener 0 127.0.0.1\ncertfile ${certs.expired.cert}\nkeyfile ${certs.expired.key}\nallow_expired_certificate true\n`)
  const d = await spawnMidge(conf)
  try {
    expect(d.output()).toContain('serving it anyway (allow_expired_certificate true)')
  } finally { await d.stop() }
})

test('`midge certs` makes a CA, a server certificate and a client certificate that mosquitto clients accept; keys 0600, never overwritten', async ({ onTestFinished }) => {
  const d = join(certs.dir, 'cli')
  const ca = await midge(['certs', 'ca', '--dir', d])
  expect([ca.code, ca.stdout]).toEqual([0, `wrote ${join(d, 'ca.crt')} and ${join(d, 'ca.key')}\n`])
  const srv = await midge(['certs', 'server', '--dir', d, '--host', 'localhost', '--host', '127.0.0.1'])
  expect(srv.code).toBe(0)
  expect(srv.stdout).toContain(`certfile ${join(d, 'server.crt')}\nkeyfile ${join(d, 'server.key')}`)
  expect((await midge(['certs', 'client', 'dev-1', '--dir', d])).code).toBe(0)
  for (const k of ['ca.key', 'server.key', 'dev-1.key']) expect(statSync(join(d, k)).mode & 0o777).toBe(0o600)
  const again = await midge(['certs', 'ca', '--dir', d])
  expect(again.code).toBe(2)
  expect(again.stderr.trim()).toBe(`Error: ${join(d, 'ca.crt')} exists; remove it first (Midge never overwrites keys).`)

  const acl = join(d, 'acl')
  writeFileSync(acl, 'user dev-1\ntopic readwrite dev/#\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\ncafile ${join(d, 'ca.crt')}\ncertfile ${join(d, 'server.crt')}\nkeyfile ${join(d, 'server.key')}\nrequire_certificate true\nuse_identity_as_username true\nacl_file ${acl}\n`)
  onTestFinished(() => b.close())
  const base = ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', join(d, 'ca.crt'), '--cert', join(d, 'dev-1.crt'), '--key', join(d, 'dev-1.key')]
  const sub = mosquittoSub([...base, '-t', 'dev/#'])
  await sub.ready
  expect((await run('mosquitto_pub', [...base, '-t', 'other', '-m', 'dropped', '-q', '1'])).code).toBe(0)
  expect((await run('mosquitto_pub', [...base, '-t', 'dev/1', '-m', 'from dev-1', '-q', '1'])).code).toBe(0)
  expect(lastLine((await sub.done).stdout)).toBe('from dev-1')
})

test('capath: a directory of CA certificates (*.crt, as mosquitto documents) verifies client certificates', async ({ onTestFinished }) => {
  const capath = join(certs.dir, 'capath')
  mkdirSync(capath)
  copyFileSync(certs.ca, join(capath, 'midge-test-ca.crt'))
  const b = await startTestBroker(`listener 0 127.0.0.1\ncapath ${capath}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nrequire_certificate true\nallow_anonymous true\n`)
  onTestFinished(() => b.close())
  const base = ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', certs.ca, '-t', 'capath/t', '-m', 'x']
  const ok = await run('mosquitto_pub', [...base, '--cert', certs.alice.cert, '--key', certs.alice.key])
  expect([ok.code, ok.stderr]).toEqual([0, ''])
  const rogue = await run('mosquitto_pub', [...base, '--cert', certs.rogue.cert, '--key', certs.rogue.key])
  expect(rogue.code).not.toBe(0)
})

test('tls_version tlsv1.3 refuses a TLS 1.2 client; the default accepts it', async ({ onTestFinished }) => {
  const strict = await startTestBroker(tlsConf('tls_version tlsv1.3\nallow_anonymous true\n'))
  onTestFinished(() => strict.close())
  const open = await startTestBroker(tlsConf('allow_anonymous true\n'))
  onTestFinished(() => open.close())
  // node's client, capped at a version (mosquitto_pub --tls-version does not cap: it still offers TLS 1.3)
  const hello = (port: number, maxVersion: tls.SecureVersion) => new Promise<string>(resolve => {
    const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port, ca: readFileSync(certs.ca), maxVersion })
    s.once('secureConnect', () => { resolve(s.getProtocol() ?? '?'); s.destroy() })
    s.once('error', err => resolve(err.message))
  })
  expect(await hello(strict.port('tls'), 'TLSv1.2')).toMatch(/alert protocol version/)
  expect(await hello(strict.port('tls'), 'TLSv1.3')).toBe('TLSv1.3')
  expect(await hello(open.port('tls'), 'TLSv1.2')).toBe('TLSv1.2')
})

test('reload (SIGHUP) picks up a renewed certificate for new connections; live ones stay; a broken renewal keeps the current one', async ({ onTestFinished }) => {
  const cert = join(certs.dir, 'live.crt')
  const key = join(certs.dir, 'live.key')
  copyFileSync(certs.server.cert, cert)
  copyFileSync(certs.server.key, key)
  const b = await startTestBroker(`listener 0 127.0.0.1\ncertfile ${cert}\nkeyfile ${key}\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol websockets\ncertfile ${cert}\nkeyfile ${key}\n`)
  onTestFinished(() => b.close())
  const serialOf = (port: number) => new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port, ca: readFileSync(certs.ca) })
    s.once('secureConnect', () => { resolve(s.getPeerCertificate().serialNumber); s.destroy() })
    s.once('error', reject)
  })
  const first = new X509Certificate(readFileSync(certs.server.cert)).serialNumber
  expect(await serialOf(b.port('tls'))).toBe(first)
  const live = await mqtt.connectAsync(`mqtts://localhost:${b.port('tls')}`, { clientId: 'live', ca: readFileSync(certs.ca), reconnectPeriod: 0 })
  onTestFinished(() => live.endAsync())

  const ca = { cert: readFileSync(certs.ca, 'utf8'), key: readFileSync(join(certs.dir, 'ca.key'), 'utf8') }
  const renewed = createServerCert(ca, ['localhost'])
  writeFileSync(cert, renewed.cert)
  writeFileSync(key, renewed.key)
  await b.broker.reload()
  const second = new X509Certificate(renewed.cert).serialNumber
  expect(second).not.toBe(first)
  expect(await serialOf(b.port('tls'))).toBe(second)
  expect(await serialOf(b.port('wss'))).toBe(second)
  const echo = nextMessage(live)
  await live.subscribeAsync('still', { qos: 1 })
  await live.publishAsync('still', 'up', { qos: 1 })
  expect((await echo)[1].toString()).toBe('up')

  writeFileSync(key, readFileSync(certs.alice.key)) // does not match: the renewed certificate stays in use
  await b.broker.reload()
  expect(await serialOf(b.port('tls'))).toBe(second)
})

test('`midge certs sign` signs a client CSR made with openssl (the key never leaves the client) and mosquitto_pub connects with it', async ({ onTestFinished }) => {
  const d = join(certs.dir, 'csr')
  mkdirSync(d)
  const req = await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(d, 'dev.key'), '-subj', '/CN=csr-dev', '-out', join(d, 'dev.csr')])
  expect(req.code).toBe(0)
  const signed = await midge(['certs', 'sign', join(d, 'dev.csr'), '--dir', certs.dir])
  expect([signed.code, signed.stdout]).toEqual([0, `wrote ${join(d, 'dev.crt')}\n`])
  expect(new X509Certificate(readFileSync(join(d, 'dev.crt'))).subject).toBe('CN=csr-dev')
  const bad = await midge(['certs', 'sign', join(d, 'dev.key'), '--dir', certs.dir])
  expect(bad.code).toBe(2)
  expect(bad.stderr).toMatch(/^Error: .*dev\.key: not a PEM certificate signing request/)

  const acl = join(d, 'acl')
  writeFileSync(acl, 'user csr-dev\ntopic readwrite csr/#\n')
  const b = await startTestBroker(tlsConf(`require_certificate true\nuse_identity_as_username true\nacl_file ${acl}\n`))
  onTestFinished(() => b.close())
  const base = ['-h', 'localhost', '-p', String(b.port('tls')), '--cafile', certs.ca, '--cert', join(d, 'dev.crt'), '--key', join(d, 'dev.key')]
  const sub = mosquittoSub([...base, '-t', 'csr/#'])
  await sub.ready
  expect((await run('mosquitto_pub', [...base, '-t', 'csr/1', '-m', 'signed', '-q', '1'])).code).toBe(0)
  expect(lastLine((await sub.done).stdout)).toBe('signed')
})

test('use_subject_as_username gives the subject as mosquitto 2.0.11 does (RFC 2253: CN=multi,O=Org Ltd,C=GB)', async ({ onTestFinished }) => {
  const d = join(certs.dir, 'subject')
  mkdirSync(d)
  const key = join(d, 'multi.key')
  expect((await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', '/C=GB/O=Org Ltd/CN=multi', '-out', join(d, 'multi.csr')])).code).toBe(0)
  const crt = join(d, 'multi.crt')
  writeFileSync(crt, signClientCsr({ cert: readFileSync(certs.ca, 'utf8'), key: readFileSync(join(certs.dir, 'ca.key'), 'utf8') }, readFileSync(join(d, 'multi.csr'), 'utf8')))
  const acl = join(d, 'acl')
  writeFileSync(acl, 'user CN=multi,O=Org Ltd,C=GB\ntopic readwrite subj/#\n')
  const conf = `cafile ${certs.ca}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nrequire_certificate true\nuse_subject_as_username true\nacl_file ${acl}\n`
  const b = await startTestBroker(`listener 0 127.0.0.1\n${conf}`)
  onTestFinished(() => b.close())
  const port = await freePort()
  const mconf = join(d, 'mosquitto.conf')
  writeFileSync(mconf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nlog_dest stderr\n${conf}`)
  const m = await spawnMosquitto(mconf)
  onTestFinished(() => m.stop())
  for (const p of [b.port('tls'), port]) {
    const base = ['-h', 'localhost', '-p', String(p), '--cafile', certs.ca, '--cert', crt, '--key', key]
    const sub = mosquittoSub([...base, '-t', '#'])
    await sub.ready
    // only subj/ is granted to that username: the first message is dropped, the second delivered
    expect((await run('mosquitto_pub', [...base, '-t', 'other', '-m', 'dropped', '-q', '1'])).code).toBe(0)
    expect((await run('mosquitto_pub', [...base, '-t', 'subj/1', '-m', `via ${p}`, '-q', '1'])).code).toBe(0)
    expect(lastLine((await sub.done).stdout)).toBe(`via ${p}`)
  }
})
