/**
 * mosquitto listener options over real sockets and real clients: Unix socket listeners (mosquitto_pub --unix),
 * http_dir static files, websockets_headers_size, bind_interface, TLS-PSK (mosquitto_pub --psk), crlfile with its
 * SIGHUP reload, ciphers_tls1.3 and dhparamfile.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, writeFileSync, symlinkSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import tls from 'node:tls'
import http from 'node:http'
import { startTestBroker } from '../helpers/start-broker.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'
import { run } from '../helpers/processes.js'
import { connect, collect } from '../helpers/mqtt.js'

let certs: TestCerts
beforeAll(() => { certs = makeTestCerts() }, 60_000)
afterAll(() => certs.remove())

test('listener 0 PATH: a Unix socket listener that mosquitto_pub --unix reaches; the socket file goes on close', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 {dir}/midge.sock\nlistener 0 127.0.0.1\nallow_anonymous true\n')
  let closed = false
  onTestFinished(async () => { if (!closed) await b.close() })
  const path = join(b.dir, 'midge.sock')
  expect(b.broker.bound.map(x => [x.config.id, x.address.family, x.address.address])).toEqual([
    [`tcp:${path}`, 'unix', path], ['tcp:0', 'IPv4', '127.0.0.1']
  ])
  const sub = await connect(`mqtt://127.0.0.1:${b.broker.bound[1]!.address.port}`, { clientId: 'sub' }, onTestFinished)
  const got = collect(sub)
  await sub.subscribeAsync('unix/#', { qos: 1 })
  const r = await run('mosquitto_pub', ['--unix', path, '-q', '1', '-t', 'unix/a', '-m', 'over a socket file'])
  expect(r.code).toBe(0)
  expect((await got.take(1)).map(m => [m.topic, m.payload])).toEqual([['unix/a', 'over a socket file']])
  await sub.endAsync()
  await b.close()
  closed = true
  expect(() => readFileSync(path)).toThrow(/ENOENT/)
})

test('a stale socket file left by a crash is replaced; a path that is not a socket is left alone', async ({ onTestFinished }) => {
  const b1 = await startTestBroker('listener 0 {dir}/in-use.sock\nallow_anonymous true\n')
  onTestFinished(() => b1.close())
  // a regular file in the way: listen fails, the file stays
  const notSocket = join(b1.dir, 'regular-file')
  writeFileSync(notSocket, 'keep me')
  await expect(startTestBroker(`listener 0 ${notSocket}\nallow_anonymous true\n`)).rejects.toThrow(/Address already in use/)
  expect(readFileSync(notSocket, 'utf8')).toBe('keep me')
  // a live broker's socket: not taken over
  await expect(startTestBroker(`listener 0 ${join(b1.dir, 'in-use.sock')}\nallow_anonymous true\n`)).rejects.toThrow(/Address already in use/)
})

function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number, type?: string, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers }, res => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }))
    })
    req.on('error', reject)
  })
}

test('http_dir: files and index.html on the websockets listener, MQTT over WebSocket beside them, nothing outside the directory', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nprotocol websockets\nhttp_dir {dir}/www\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  const www = join(b.dir, 'www')
  mkdirSync(join(www, 'js'), { recursive: true })
  writeFileSync(join(www, 'index.html'), '<h1>Midge</h1>')
  writeFileSync(join(www, 'js', 'app.js'), 'console.log(1)')
  writeFileSync(join(b.dir, 'secret.txt'), 'not for you')
  symlinkSync(join(b.dir, 'secret.txt'), join(www, 'link.txt'))
  const port = b.port('ws')
  expect(await get(port, '/')).toEqual({ status: 200, type: 'text/html; charset=utf-8', body: '<h1>Midge</h1>' })
  expect(await get(port, '/js/app.js?v=1')).toEqual({ status: 200, type: 'text/javascript; charset=utf-8', body: 'console.log(1)' })
  for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/link.txt', '/missing.html']) expect((await get(port, path)).status).toBe(404)
  // Midge's own routes still answer where no file is
  expect((await get(port, '/healthz')).status).toBe(200)
  const c = await connect(b.url('ws'), { clientId: 'ws' }, onTestFinished)
  await c.publishAsync('t', 'x', { qos: 1 })
})

test('websockets_headers_size bounds the HTTP request head (431 beyond it)', async ({ onTestFinished }) => {
  const b = await startTestBroker('websockets_headers_size 2048\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  expect((await get(b.port('ws'), '/healthz', { cookie: 'x'.repeat(1000) })).status).toBe(200)
  expect((await get(b.port('ws'), '/healthz', { cookie: 'x'.repeat(4000) })).status).toBe(431)
})

test('bind_interface lo binds the loopback interface\'s address', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0\nbind_interface lo\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  expect(b.broker.bound[0]!.address.address).toBe('127.0.0.1')
  await expect(startTestBroker('listener 0\nbind_interface no-such-if0\nallow_anonymous true\n')).rejects.toThrow('bind_interface no-such-if0: no such network interface.')
})

test('TLS-PSK: psk_hint + psk_file; mosquitto_pub --psk connects with the right key only; use_identity_as_username', async ({ onTestFinished }) => {
  const psk = join(certs.dir, 'psk')
  writeFileSync(psk, '# identity:hexkey\nsensor-1:00112233445566778899aabbccddeeff\n')
  const b = await startTestBroker(`psk_file ${psk}\nlistener 0 127.0.0.1\npsk_hint midge test\nuse_identity_as_username true\nlistener 0 127.0.0.1\nallow_anonymous true\n`)
  onTestFinished(() => b.close())
  expect(b.broker.bound.map(x => x.config.transport)).toEqual(['tls', 'tcp'])
  const pskPort = b.broker.bound[0]!.address.port
  const users: Array<string | undefined> = []
  b.broker.aedes.on('client', c => { users.push(b.broker.hooks.clientInfo.get(c)?.username) })
  const pub = (key: string) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(pskPort), '--psk', key, '--psk-identity', 'sensor-1', '--tls-version', 'tlsv1.2', '-t', 'psk/a', '-m', 'hi'])
  expect((await pub('00112233445566778899aabbccddeeff')).code).toBe(0)
  expect(users).toEqual(['sensor-1'])
  expect((await pub('ffffffffffffffffffffffffffffffff')).code).not.toBe(0)
  expect(users).toEqual(['sensor-1'])
}, 30_000)

test('crlfile: a revoked client certificate is refused; SIGHUP\'s reload picks up a new CRL', async ({ onTestFinished }) => {
  // a CA database for `openssl ca`, revoking bob (alice and bob share a CA)
  const caDir = join(certs.dir, `crl-${Date.now()}`)
  mkdirSync(caDir)
  const cnf = join(caDir, 'ca.cnf')
  writeFileSync(join(caDir, 'index.txt'), '')
  writeFileSync(join(caDir, 'crlnumber'), '01\n')
  writeFileSync(cnf, `[ca]\ndefault_ca = d\n[d]\ndatabase = ${caDir}/index.txt\ncrlnumber = ${caDir}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n`)
  const caArgs = ['-config', cnf, '-keyfile', certs.ca.replace(/\.crt$|\.pem$/, '') + '.key', '-cert', certs.ca]
  const crl = join(caDir, 'crl.pem')
  const gencrl = async () => { const r = await run('openssl', ['ca', ...caArgs, '-gencrl', '-out', crl]); expect(r.stderr).not.toMatch(/error/i) }
  await gencrl()
  const b = await startTestBroker(`listener 0 127.0.0.1\ncafile ${certs.ca}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nrequire_certificate true\ncrlfile ${crl}\nallow_anonymous true\n`)
  onTestFinished(() => b.close())
  const handshake = (who: { cert: string, key: string }) => new Promise<string>(resolve => {
    // TLS 1.2: the server's verdict on the client certificate is an alert inside the handshake
    const s = tls.connect({ host: '127.0.0.1', port: b.port('tls'), ca: readFileSync(certs.ca), cert: readFileSync(who.cert), key: readFileSync(who.key), servername: 'localhost', maxVersion: 'TLSv1.2' })
    s.on('secureConnect', () => {
      // accepted: the broker answers a CONNECT
      s.write(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 0]))
      s.once('data', () => { s.destroy(); resolve('accepted') })
    })
    s.on('error', err => resolve(err.message))
    s.on('close', () => resolve('closed'))
  })
  expect([await handshake(certs.alice), await handshake(certs.bob)]).toEqual(['accepted', 'accepted'])
  const rv = await run('openssl', ['ca', ...caArgs, '-revoke', certs.bob.cert])
  expect(rv.code).toBe(0)
  await gencrl()
  await b.broker.reload()
  // the same certificate the same broker accepted before the reload: the new CRL refuses it in the handshake
  const [alice, bob] = [await handshake(certs.alice), await handshake(certs.bob)]
  expect(alice).toBe('accepted')
  expect(bob).toMatch(/revoked|disconnected before secure TLS connection was established/)
}, 60_000)

test('ciphers_tls1.3 limits the TLS 1.3 suites; dhparamfile loads DH parameters', async ({ onTestFinished }) => {
  const dh = join(certs.dir, 'dh.pem')
  const g = await run('openssl', ['dhparam', '-dsaparam', '-out', dh, '1024'], { timeoutMs: 60_000 })
  expect(g.code).toBe(0)
  const b = await startTestBroker(`listener 0 127.0.0.1\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\ndhparamfile ${dh}\nallow_anonymous true\n`)
  onTestFinished(() => b.close())
  const cipher = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: b.port('tls'), ca: readFileSync(certs.ca), servername: 'localhost' }, () => { resolve(s.getCipher().name); s.destroy() })
    s.on('error', reject)
  })
  expect(cipher).toBe('TLS_CHACHA20_POLY1305_SHA256')
  const refused = await new Promise<string>(resolve => {
    const s = tls.connect({ host: '127.0.0.1', port: b.port('tls'), ca: readFileSync(certs.ca), servername: 'localhost', ciphers: 'TLS_AES_128_GCM_SHA256', minVersion: 'TLSv1.3' }, () => { resolve('connected'); s.destroy() })
    s.on('error', err => resolve(err.message))
  })
  expect(refused).toMatch(/handshake failure/)
}, 90_000)
