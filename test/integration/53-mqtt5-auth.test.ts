/**
 * MQTT 5 enhanced authentication (AUTH packets) through an auth_plugin's `enhancedAuth` hook
 * (src/broker/enhanced-auth.ts), with the challenge-response plug-in test/helpers/challenge-auth-plugin.js:
 * MQTT.js v5 (`handleAuth`) and raw bytes; re-authentication; refusals, unknown methods, AUTH out of turn and a
 * client that never answers its challenge. And the CONNACK codes a v5 client gets from the password file,
 * anonymous access, clientid_prefixes and plug-ins, beside Debian's mosquitto 2.0.11.
 */
import { test, expect } from 'vitest'
import { createHmac, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt, { type IConnackPacket } from 'mqtt'
import type { IAuthPacket } from 'mqtt-packet'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { RawClient, type AnyPacket } from '../helpers/raw-client.js'
import { nextMessage } from '../helpers/mqtt.js'
import { freePort, spawnMosquitto } from '../helpers/processes.js'
import { hashPasswordSha512 } from '../../src/auth/password-hash.js'
import { makeTestCerts } from '../helpers/certs.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const PLUGIN = join(ROOT, 'test/helpers/challenge-auth-plugin.js')
const METHOD = 'MIDGE-HMAC-SHA256'
const SECRET = 'test-secret-0123456789'
const AUTH_CONTINUE = 0x18
const REAUTHENTICATE = 0x19
const NONCE_BYTES = 16

const hmac = (key: string | Buffer, ...parts: Array<string | Buffer>): Buffer => {
  const h = createHmac('sha256', key)
  for (const p of parts) h.update(p)
  return h.digest()
}
const keyOf = (user: string): Buffer => hmac(SECRET, user)

async function broker (onTestFinished: (fn: () => Promise<void>) => void, extra = ''): Promise<TestBroker> {
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous false\nauth_plugin ${PLUGIN}\nauth_opt_secret ${SECRET}\nauth_opt_rounds 2\nauth_opt_user_prefix dev-\n${extra}`)
  onTestFinished(() => b.close())
  return b
}

function rawConnect (c: RawClient, user: string, cnonce: Buffer, method = METHOD, clientId = 'raw-ea'): void {
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId, keepalive: 60, username: user, properties: { authenticationMethod: method, authenticationData: cnonce } })
}

/** Answers `rounds` challenges correctly (the last one wrong when `spoilLast`); returns the AUTH packets received. */
async function answer (c: RawClient, user: string, cnonce: Buffer, rounds: number, spoilLast = false): Promise<AnyPacket[]> {
  const got: AnyPacket[] = []
  for (let i = 0; i < rounds; i++) {
    const a = await c.next('auth')
    got.push(a)
    const proof = hmac(keyOf(user), cnonce, a.properties.authenticationData as Buffer)
    if (spoilLast && i === rounds - 1) proof[0]! ^= 1
    c.send({ cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: proof } })
  }
  return got
}

for (const transport of ['tcp', 'ws'] as const) {
  test(`MQTT.js v5 over ${transport}: two challenge rounds through handleAuth, then CONNACK 0x00 with the method and the server proof`, async ({ onTestFinished }) => {
    const b = await broker(onTestFinished, 'listener 0 127.0.0.1\nprotocol websockets\n')
    const cnonce = randomBytes(NONCE_BYTES)
    const challenges: Buffer[] = []
    const c = mqtt.connect(b.url(transport), {
      protocolVersion: 5,
      clientId: 'js-ea',
      username: 'sensor',
      reconnectPeriod: 0,
      properties: { authenticationMethod: METHOD, authenticationData: cnonce }
    })
    onTestFinished(() => { c.end(true) })
    c.handleAuth = (packet: IAuthPacket, cb: (err?: Error, p?: IAuthPacket) => void) => {
      const n = packet.properties!.authenticationData!
      challenges.push(n)
      cb(undefined, { cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: hmac(keyOf('sensor'), cnonce, n) } })
    }
    const connack = await new Promise<IConnackPacket>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
    expect(challenges.map(n => n.length)).toEqual([NONCE_BYTES, NONCE_BYTES])
    expect(connack.reasonCode).toBe(0)
    expect(connack.properties?.authenticationMethod).toBe(METHOD)
    expect(connack.properties?.authenticationData).toEqual(hmac(keyOf('sensor'), 'server', ...challenges))
    // the connection works as any other
    await c.subscribeAsync('ea/t', { qos: 1 })
    const got = nextMessage(c)
    await c.publishAsync('ea/t', 'hello', { qos: 1 })
    const [topic, payload] = await got
    expect([topic, payload.toString()]).toEqual(['ea/t', 'hello'])
  })
}

test('raw bytes: AUTH 0x18, AUTH 0x18, CONNACK 0x00 in that order; the plug-in\'s username reaches the ACL', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const acl = join(dir, 'acl')
  writeFileSync(acl, 'user dev-raw\ntopic readwrite ok/#\n')
  const b = await broker(onTestFinished, `acl_file ${acl}\n`)
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  const cnonce = randomBytes(NONCE_BYTES)
  rawConnect(c, 'raw', cnonce)
  const auths = await answer(c, 'raw', cnonce, 2)
  const connack = await c.next('connack')
  expect(auths.map(a => [a.reasonCode, a.properties.authenticationMethod, (a.properties.authenticationData as Buffer).length])).toEqual([[AUTH_CONTINUE, METHOD, NONCE_BYTES], [AUTH_CONTINUE, METHOD, NONCE_BYTES]])
  expect(connack.reasonCode).toBe(0)
  expect(connack.properties.authenticationMethod).toBe(METHOD)
  expect(connack.properties.authenticationData).toEqual(hmac(keyOf('raw'), 'server', ...auths.map(a => a.properties.authenticationData as Buffer)))
  // nothing else was sent before the CONNACK
  expect(c.packets).toEqual([])
  // the ACL sees "dev-raw": ok/# may be published (nobody subscribes: PUBACK 0x10), other topics are refused (0x87)
  c.send({ cmd: 'publish', topic: 'ok/1', payload: 'x', qos: 1, messageId: 1 })
  c.send({ cmd: 'publish', topic: 'no/1', payload: 'x', qos: 1, messageId: 2 })
  expect([(await c.next('puback')).reasonCode, (await c.next('puback')).reasonCode]).toEqual([0x10, 0x87])
})

test('a wrong answer in the second round: CONNACK 0x87 and the connection closes', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  const cnonce = randomBytes(NONCE_BYTES)
  rawConnect(c, 'bad', cnonce)
  await answer(c, 'bad', cnonce, 2, true)
  await c.closed
  const bytes = Buffer.concat(c.received)
  // the two AUTH challenges, then exactly CONNACK 0x87 with no properties
  expect(bytes.subarray(-5)).toEqual(Buffer.from([0x20, 0x03, 0x00, 0x87, 0x00]))
  expect(c.packets.map(p => p.cmd)).toEqual(['connack'])
})

test('a method no plug-in takes: CONNACK 0x8C; a v5 client without a method and a 3.1.1 client connect as before', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished, 'allow_anonymous true\n')
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  rawConnect(c, 'u', randomBytes(NONCE_BYTES), 'SCRAM-SHA-1')
  await c.closed
  expect(Buffer.concat(c.received)).toEqual(Buffer.from([0x20, 0x03, 0x00, 0x8c, 0x00]))
  for (const protocolVersion of [4, 5] as const) {
    const plain = await mqtt.connectAsync(b.url(), { protocolVersion, clientId: `plain${protocolVersion}`, reconnectPeriod: 0 })
    const got = nextMessage(plain)
    await plain.subscribeAsync('p/t')
    await plain.publishAsync('p/t', 'x')
    expect((await got)[1].toString()).toBe('x')
    await plain.endAsync()
  }
})

test('AUTH before CONNECT closes the connection with nothing sent, as mosquitto 2.0 does', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  c.send({ cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: randomBytes(NONCE_BYTES) } })
  await c.closed
  expect(c.received).toEqual([])
})

test('a packet other than AUTH, or an AUTH out of turn, during the exchange: DISCONNECT 0x82, as from mosquitto 2.0.11 [MQTT-3.1.2-30]', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  const bad: Array<Record<string, unknown>> = [
    { cmd: 'publish', topic: 'early/t', payload: 'x', qos: 0 },
    { cmd: 'auth', reasonCode: 0, properties: { authenticationMethod: METHOD, authenticationData: Buffer.from('x') } },
    { cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: 'OTHER', authenticationData: Buffer.from('x') } }
  ]
  for (const packet of bad) {
    const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
    rawConnect(c, 'early', randomBytes(NONCE_BYTES))
    await c.next('auth')
    c.send(packet)
    expect([packet.cmd, (await c.next('disconnect')).reasonCode]).toEqual([packet.cmd, 0x82])
    await c.closed
    expect(c.packets).toEqual([])
  }
})

test('an AUTH sent right behind the CONNECT is the answer to the first challenge, as mosquitto 2.0.11 takes it', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  rawConnect(c, 'eager', randomBytes(NONCE_BYTES))
  // it cannot know the nonce yet, so the answer is wrong: the first challenge goes out, then the refusal
  c.send({ cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: Buffer.alloc(32) } })
  expect((await c.next('auth')).reasonCode).toBe(AUTH_CONTINUE)
  expect((await c.next('connack')).reasonCode).toBe(0x87)
  await c.closed
})

test('a client that never answers its challenge is closed after connect_timeout, without CONNACK', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished, 'connect_timeout 1\n')
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  rawConnect(c, 'silent', randomBytes(NONCE_BYTES))
  const challenge = await c.next('auth')
  const t0 = Date.now()
  expect(challenge.reasonCode).toBe(AUTH_CONTINUE)
  await c.closed
  const waited = Date.now() - t0
  expect(c.packets).toEqual([])
  expect(waited).toBeGreaterThan(500)
  expect(waited).toBeLessThan(3000)
})

test('re-authentication (AUTH 0x19) runs through the same hook: AUTH 0x00 with the proof; a wrong answer gets DISCONNECT 0x87', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  const cnonce = randomBytes(NONCE_BYTES)
  rawConnect(c, 're', cnonce)
  await answer(c, 're', cnonce, 2)
  expect((await c.next('connack')).reasonCode).toBe(0)
  // a re-authentication, with a QoS 1 publish in the middle of it: the connection carries on meanwhile
  const renonce = randomBytes(NONCE_BYTES)
  c.send({ cmd: 'auth', reasonCode: REAUTHENTICATE, properties: { authenticationMethod: METHOD, authenticationData: renonce } })
  const first = await c.next('auth')
  c.send({ cmd: 'publish', topic: 're/t', payload: 'x', qos: 1, messageId: 7 })
  expect((await c.next('puback')).messageId).toBe(7)
  c.send({ cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: hmac(keyOf('re'), renonce, first.properties.authenticationData as Buffer) } })
  const second = await c.next('auth')
  c.send({ cmd: 'auth', reasonCode: AUTH_CONTINUE, properties: { authenticationMethod: METHOD, authenticationData: hmac(keyOf('re'), renonce, second.properties.authenticationData as Buffer) } })
  const done = await c.next('auth')
  expect(done.reasonCode).toBe(0)
  expect(done.properties.authenticationData).toEqual(hmac(keyOf('re'), 'server', first.properties.authenticationData as Buffer, second.properties.authenticationData as Buffer))
  await c.ping()
  // a second re-authentication with a wrong answer ends the connection
  c.send({ cmd: 'auth', reasonCode: REAUTHENTICATE, properties: { authenticationMethod: METHOD, authenticationData: renonce } })
  await answer(c, 're', renonce, 1, true)
  expect((await c.next('disconnect')).reasonCode).toBe(0x87)
  await c.closed
})

test('AUTH out of turn after the CONNACK: another method, or 0x18 with no exchange running, gets DISCONNECT 0x82', async ({ onTestFinished }) => {
  const b = await broker(onTestFinished)
  for (const bad of [{ reasonCode: REAUTHENTICATE, method: 'OTHER' }, { reasonCode: AUTH_CONTINUE, method: METHOD }]) {
    const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
    onTestFinished(() => c.end())
    const cnonce = randomBytes(NONCE_BYTES)
    rawConnect(c, 'oot', cnonce, METHOD, `oot${bad.reasonCode}`)
    await answer(c, 'oot', cnonce, 2)
    expect((await c.next('connack')).reasonCode).toBe(0)
    c.send({ cmd: 'auth', reasonCode: bad.reasonCode, properties: { authenticationMethod: bad.method, authenticationData: cnonce } })
    expect((await c.next('disconnect')).reasonCode).toBe(0x82)
    await c.closed
  }
})

/** The bytes a v5 CONNECT with these credentials is answered with, once the broker has closed or 500 ms passed. */
async function v5Connack (port: number, clientId: string, username?: string, password?: string): Promise<string> {
  const c = await RawClient.connect(port, '127.0.0.1', 5)
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId, keepalive: 60, ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password: Buffer.from(password) } : {}) })
  const p = await c.next('connack')
  c.end()
  // a refusal carries no properties: the exact bytes; an acceptance: its reason code
  return p.reasonCode === 0 ? 'accepted' : Buffer.concat(c.received).toString('hex')
}

/** Debian's mosquitto and an in-process Midge on the same auth options: mosquitto's port and the Midge. */
async function bothBrokers (dir: string, common: string, onTestFinished: (fn: () => Promise<void>) => void): Promise<{ port: number, b: TestBroker }> {
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nlog_dest stderr\n${common}`)
  const mosq = await spawnMosquitto(conf)
  onTestFinished(() => mosq.stop())
  const b = await startTestBroker(`listener 0 127.0.0.1\n${common}`)
  onTestFinished(() => b.close())
  return { port, b }
}

test('v5 CONNACK codes of the password file, anonymous access and clientid_prefixes are mosquitto 2.0.11\'s; plug-ins give 0x87 and 0x88', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const pw = join(dir, 'pw')
  writeFileSync(pw, `alice:${hashPasswordSha512('secret')}\n`)
  const common = `allow_anonymous false\npassword_file ${pw}\nclientid_prefixes dev-\n`
  const { port, b } = await bothBrokers(dir, common, onTestFinished)
  const cases: Array<[string, string, string | undefined, string | undefined, string]> = [
    ['wrong password', 'dev-1', 'alice', 'wrong', '2003008700'],
    ['unknown user', 'dev-1', 'bob', 'secret', '2003008700'],
    ['anonymous with allow_anonymous false', 'dev-1', undefined, undefined, '2003008700'],
    ['client id outside clientid_prefixes', 'other', 'alice', 'secret', '2003008700'],
    ['good credentials', 'dev-1', 'alice', 'secret', 'accepted']
  ]
  for (const [what, id, user, pass, want] of cases) {
    expect([what, await v5Connack(port, id, user, pass)]).toEqual([what, want])
    expect([what, await v5Connack(b.port(), id, user, pass)]).toEqual([what, want])
  }

  // a plug-in's deny is 0x87 as the files' is; a plug-in that throws is 0x88 (server unavailable), logged
  const plugin = join(dir, 'deny-plugin.mjs')
  writeFileSync(plugin, 'export default () => ({ name: "deny", async authenticate ({ username }) { if (username === "boom") throw new Error("backend down"); return username === "ok" ? "allow" : "deny" } })\n')
  const p = await startTestBroker(`listener 0 127.0.0.1\nauth_plugin ${plugin}\n`)
  onTestFinished(() => p.close())
  expect(await v5Connack(p.port(), 'c1', 'ok', 'x')).toBe('accepted')
  expect(await v5Connack(p.port(), 'c2', 'no', 'x')).toBe('2003008700')
  expect(await v5Connack(p.port(), 'c3', 'boom', 'x')).toBe('2003008800')
})

test('an empty client id refused by allow_zero_length_clientid false: 0x85 (Client Identifier not valid); mosquitto 2.0.11 sends 0x80', async ({ onTestFinished }) => {
  const common = 'allow_anonymous true\nallow_zero_length_clientid false\n'
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const { port, b } = await bothBrokers(dir, common, onTestFinished)
  expect(await v5Connack(b.port(), '')).toBe('2003008500')
  expect(await v5Connack(port, '')).toBe('2003008000')
})

/** The reason code a v5 MQTT.js client over TLS without a client certificate is refused with. */
async function tlsRefusal (port: number, ca: string): Promise<number | undefined> {
  try {
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { protocolVersion: 5, clientId: 'nocert', ca: readFileSync(ca), rejectUnauthorized: false, reconnectPeriod: 0 })
    await c.endAsync()
    return 0
  } catch (err) {
    return (err as { code?: number }).code
  }
}

test('use_identity_as_username without a client certificate: CONNACK 0x86 (bad user name or password), as from mosquitto 2.0.11', async ({ onTestFinished }) => {
  const certs = makeTestCerts()
  onTestFinished(() => certs.remove())
  const tls = `cafile ${certs.ca}\ncertfile ${certs.server.cert}\nkeyfile ${certs.server.key}\nrequire_certificate false\nuse_identity_as_username true\n`
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, `user ${userInfo().username}\nlog_dest stderr\nlistener ${port} 127.0.0.1\n${tls}`)
  const mosq = await spawnMosquitto(conf)
  onTestFinished(() => mosq.stop())
  const b = await startTestBroker(`listener 0 127.0.0.1\n${tls}`)
  onTestFinished(() => b.close())
  expect(await tlsRefusal(port, certs.ca)).toBe(0x86)
  expect(await tlsRefusal(b.port('tls'), certs.ca)).toBe(0x86)
}, 60_000)

test('plug-ins in order: one defers a method it does not know, the next takes it; an answer that is not one is CONNACK 0x88', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const odd = join(dir, 'odd-plugin.mjs')
  writeFileSync(odd, 'export default () => ({ name: "odd", async enhancedAuth ({ method }) { return method === "ODD" ? { result: "maybe" } : { result: "defer" } } })\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nauth_plugin ${odd}\nauth_plugin ${PLUGIN}\nauth_opt_secret ${SECRET}\nauth_opt_rounds 1\n`)
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  const cnonce = randomBytes(NONCE_BYTES)
  rawConnect(c, 'second', cnonce)
  await answer(c, 'second', cnonce, 1)
  expect((await c.next('connack')).reasonCode).toBe(0)
  const o = await RawClient.connect(b.port(), '127.0.0.1', 5)
  rawConnect(o, 'u', cnonce, 'ODD')
  await o.closed
  expect(Buffer.concat(o.received)).toEqual(Buffer.from([0x20, 0x03, 0x00, 0x88, 0x00]))
})
