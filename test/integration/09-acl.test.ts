/**
 * acl_file with mosquitto 2.0 semantics: each rule kind, %c/%u patterns, wildcard subscriptions crossing allowed
 * and denied topics, denied publishes acked and dropped, SUBACK 0x80 for a filter under a deny rule (Midge
 * extension), $ topics, and reload (in-process and SIGHUP). The delivery scenarios run against Debian's mosquitto
 * 2.0.11 too, with the same files, and must give the same messages.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { startTestBroker, type TestBroker } from '../helpers/start-broker.js'
import { freePort, midge, run, spawnMidge, spawnMosquitto, type Daemon } from '../helpers/processes.js'
import { subackCodes } from '../helpers/mqtt.js'

const ACL = `# anonymous clients
topic read public/#

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic read shared/#
topic write shared/alice

user bob
topic #

pattern readwrite devices/%c/#
pattern read inbox/%u/#
`

let dir: string
let pwFile: string
let aclFile: string
let mb: TestBroker
let mosq: Daemon
let mosqUrl: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'midge-acl-'))
  pwFile = join(dir, 'pw')
  aclFile = join(dir, 'acl')
  await run('mosquitto_passwd', ['-c', '-b', pwFile, 'alice', 'apw'])
  await run('mosquitto_passwd', ['-b', pwFile, 'bob', 'bpw'])
  await run('mosquitto_passwd', ['-b', pwFile, 'carol', 'cpw'])
  writeFileSync(aclFile, ACL)
  const conf = `password_file ${pwFile}\nacl_file ${aclFile}\nallow_anonymous true\n`
  mb = await startTestBroker(`listener 0 127.0.0.1\n${conf}`)
  const port = await freePort()
  const mconf = join(dir, 'mosquitto.conf')
  writeFileSync(mconf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nlog_dest stderr\n${conf}`)
  mosq = await spawnMosquitto(mconf)
  mosqUrl = `mqtt://127.0.0.1:${port}`
})

afterAll(async () => {
  await mb?.close()
  await mosq?.stop()
  rmSync(dir, { recursive: true, force: true })
})

type Creds = { clientId: string, username?: string, password?: string }

async function client (url: string, c: Creds): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { ...c, reconnectPeriod: 0, protocolVersion: 4 })
}

/** Topics received until (and including) the marker topic. */
function collectUntil (c: mqtt.MqttClient, marker: string, timeoutMs = 10_000): Promise<string[]> {
  const got: string[] = []
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.off('message', on); reject(new Error(`no ${marker}; got ${JSON.stringify(got)}`)) }, timeoutMs)
    const on = (topic: string): void => {
      got.push(topic)
      if (topic === marker) { clearTimeout(t); c.off('message', on); resolve(got) }
    }
    c.on('message', on)
  })
}

/** `reader` subscribes to `filter`; `writer` publishes each topic at QoS 1 (every PUBACK awaited), then `marker`. */
async function scenario (url: string, reader: Creds, filter: string, writer: Creds, topics: string[], marker: string): Promise<string[]> {
  const r = await client(url, reader)
  const w = await client(url, writer)
  try {
    await r.subscribeAsync(filter, { qos: 1 })
    const got = collectUntil(r, marker)
    for (const t of [...topics, marker]) await w.publishAsync(t, t, { qos: 1 }) // denied ones are acked too
    return await got
  } finally {
    await Promise.all([r.endAsync(), w.endAsync()])
  }
}

const ALICE = { clientId: 'alice-c', username: 'alice', password: 'apw' }
const BOB = { clientId: 'bob-c', username: 'bob', password: 'bpw' }
const CAROL = { clientId: 'carol-c', username: 'carol', password: 'cpw' }
const ANON = { clientId: 'anon1' }

const READ_TOPICS = ['public/news', 'home/alice/lamp', 'home/alice/secret', 'home/alice/secret/deeper', 'shared/x', 'devices/alice-c/t',
  'devices/other/t', 'inbox/alice/m', 'inbox/bob/m', 'elsewhere']

test.each([
  ['alice reading # (own section, deny, read-only share, %c and %u patterns; no anonymous rules)', ALICE, '#', BOB, READ_TOPICS, 'home/alice/end',
    ['home/alice/lamp', 'home/alice/secret/deeper', 'shared/x', 'devices/alice-c/t', 'inbox/alice/m', 'home/alice/end']],
  ['an anonymous client reading # (anonymous section and %c pattern; %u patterns skipped)', ANON, '#', BOB, [...READ_TOPICS, 'devices/anon1/x', 'inbox//m'], 'public/end',
    ['public/news', 'devices/anon1/x', 'public/end']],
  ['carol (no section of her own) reading # gets only her patterns', CAROL, '#', BOB, [...READ_TOPICS, 'devices/carol-c/a', 'inbox/carol/b'], 'inbox/carol/end',
    ['devices/carol-c/a', 'inbox/carol/b', 'inbox/carol/end']],
  ['bob reading # sees what alice may write (readwrite, write-only, %c pattern) and nothing denied', BOB, '#', ALICE,
    ['home/alice/secret', 'home/alice/a', 'shared/alice', 'shared/other', 'public/x', 'devices/alice-c/x', 'devices/bob-c/x', 'inbox/alice/x'], 'home/alice/end2',
    ['home/alice/a', 'shared/alice', 'devices/alice-c/x', 'home/alice/end2']],
  ['a wildcard filter crossing allowed and denied topics', ALICE, 'home/alice/+', BOB, ['home/alice/1', 'home/alice/secret', 'home/alice/2'], 'home/alice/3',
    ['home/alice/1', 'home/alice/2', 'home/alice/3']]
] as const)('%s: Midge delivers exactly what mosquitto 2.0.11 delivers', async (_name, reader, filter, writer, topics, marker, expected) => {
  const got = await scenario(mb.url(), reader, filter, writer, [...topics], marker)
  expect(got).toEqual(expected)
  const ref = await scenario(mosqUrl, reader, filter, writer, [...topics], marker)
  expect(ref).toEqual(expected)
})

test('retained messages are filtered by read access when a subscription is made (same as mosquitto)', async () => {
  for (const url of [mb.url(), mosqUrl]) {
    const w = await client(url, BOB)
    for (const t of ['home/alice/secret', 'home/alice/lamp', 'home/alice/zz']) await w.publishAsync(t, t, { qos: 1, retain: true })
    await w.endAsync()
    const r = await client(url, ALICE)
    const got = collectUntil(r, 'home/alice/zz')
    await r.subscribeAsync('home/alice/#', { qos: 1 })
    const topics = await got
    await r.endAsync()
    // clear the retained messages for the next run
    const c = await client(url, BOB)
    for (const t of ['home/alice/secret', 'home/alice/lamp', 'home/alice/zz']) await c.publishAsync(t, '', { qos: 1, retain: true })
    await c.endAsync()
    expect(topics.sort()).toEqual(['home/alice/lamp', 'home/alice/zz'])
  }
})

test('a will on a topic the client may not publish to is never delivered (same as mosquitto)', async () => {
  for (const url of [mb.url(), mosqUrl]) {
    const r = await client(url, BOB)
    await r.subscribeAsync('#', { qos: 1 })
    const got = collectUntil(r, 'home/alice/will-ok')
    const denied = mqtt.connect(url, { ...ALICE, clientId: 'will-denied', reconnectPeriod: 0, will: { topic: 'public/will', payload: Buffer.from('x'), qos: 1, retain: false } })
    const allowed = mqtt.connect(url, { ...ALICE, clientId: 'will-ok', reconnectPeriod: 0, will: { topic: 'home/alice/will-ok', payload: Buffer.from('x'), qos: 1, retain: false } })
    await Promise.all([new Promise(resolve => denied.once('connect', resolve)), new Promise(resolve => allowed.once('connect', resolve))])
    // drop both connections without DISCONNECT: the wills fire, the denied one first
    ;(denied.stream as unknown as { destroy: () => void }).destroy()
    await new Promise<void>(resolve => denied.once('close', () => resolve()))
    ;(allowed.stream as unknown as { destroy: () => void }).destroy()
    expect(await got).toEqual(['home/alice/will-ok'])
    denied.end(true); allowed.end(true)
    await r.endAsync()
  }
})

test('SUBACK 0x80 for a filter that falls under a deny rule; filters that cross it are granted', async ({ onTestFinished }) => {
  const a = await client(mb.url(), ALICE)
  onTestFinished(() => a.endAsync())
  expect(await subackCodes(a, { 'home/alice/secret': { qos: 1 }, 'home/alice/#': { qos: 1 }, 'home/+/secret': { qos: 0 }, 'nothing/granted': { qos: 2 } }))
    .toEqual([0x80, 1, 0, 2])
})

test('a rule starting with a wildcard does not match $ topics; an explicit $ rule does (same as mosquitto)', async ({ onTestFinished }) => {
  const f = join(dir, 'dollar.acl')
  writeFileSync(f, 'topic #\ntopic read $app/visible\ntopic write $app/#\n')
  const conf = `allow_anonymous true\nacl_file ${f}\n`
  const b = await startTestBroker(`listener 0 127.0.0.1\n${conf}`)
  onTestFinished(() => b.close())
  const port = await freePort()
  const mconf = join(dir, 'dollar.conf')
  writeFileSync(mconf, `user ${userInfo().username}\nlistener ${port} 127.0.0.1\nlog_dest stderr\n${conf}`)
  const m = await spawnMosquitto(mconf)
  onTestFinished(() => m.stop())
  for (const url of [b.url(), `mqtt://127.0.0.1:${port}`]) {
    expect(await scenario(url, { clientId: 'r' }, '$app/#', { clientId: 'w' }, ['$app/hidden', '$app/other'], '$app/visible')).toEqual(['$app/visible'])
  }
})

test('nobody publishes to $SYS, not even with topic # and $SYS/# grants', async ({ onTestFinished }) => {
  const f = join(dir, 'sys2.acl')
  writeFileSync(f, 'pattern readwrite #\npattern readwrite $SYS/#\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${f}\nsys_interval 0\n`)
  onTestFinished(() => b.close())
  const c = await client(b.url(), { clientId: 'sysw' })
  onTestFinished(() => c.endAsync())
  await c.subscribeAsync('$SYS/fake', { qos: 1 })
  await c.subscribeAsync('end', { qos: 1 })
  const got = collectUntil(c, 'end')
  await c.publishAsync('$SYS/fake', 'x', { qos: 1 })
  await c.publishAsync('end', 'x', { qos: 1 })
  expect(await got).toEqual(['end'])
})

test('reload: new rules apply to existing connections and subscriptions; a broken file keeps the old rules', async ({ onTestFinished }) => {
  const f = join(dir, 'reload.acl')
  writeFileSync(f, 'pattern readwrite a/#\npattern write b/#\n')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${f}\n`)
  onTestFinished(() => b.close())
  const r = await client(b.url(), { clientId: 'r' })
  onTestFinished(() => r.endAsync())
  await r.subscribeAsync('#', { qos: 1 })
  const w = await client(b.url(), { clientId: 'w' })
  onTestFinished(() => w.endAsync())
  const round = async (marker: string): Promise<string[]> => {
    const got = collectUntil(r, marker)
    for (const t of ['a/1', 'b/1', marker]) await w.publishAsync(t, t, { qos: 1 })
    return got
  }
  expect(await round('a/end1')).toEqual(['a/1', 'a/end1'])
  writeFileSync(f, 'pattern readwrite b/#\npattern write a/#\n')
  await b.broker.reload()
  expect(await round('b/end2')).toEqual(['b/1', 'b/end2'])
  writeFileSync(f, 'pattern readwrite a/#\nthis is not an acl line\n')
  await b.broker.reload() // logs why and keeps b/# readable
  expect(await round('b/end3')).toEqual(['b/1', 'b/end3'])
})

test('SIGHUP to the daemon reloads the ACL for a live subscriber (child process)', async ({ onTestFinished }) => {
  const f = join(dir, 'hup.acl')
  writeFileSync(f, 'pattern read old/#\npattern write old/#\npattern write new/#\n')
  const conf = join(dir, 'hup.conf')
  writeFileSync(conf, `listener 0 127.0.0.1\nallow_anonymous true\nacl_file ${f}\n`)
  const d = await spawnMidge(conf)
  onTestFinished(() => d.stop())
  const url = `mqtt://127.0.0.1:${d.ports[0]!}`
  const r = await client(url, { clientId: 'r' })
  onTestFinished(() => r.endAsync())
  await r.subscribeAsync('#', { qos: 1 })
  const w = await client(url, { clientId: 'w' })
  onTestFinished(() => w.endAsync())
  let got = collectUntil(r, 'old/end')
  for (const t of ['new/1', 'old/1', 'old/end']) await w.publishAsync(t, t, { qos: 1 })
  expect(await got).toEqual(['old/1', 'old/end'])
  // a denied publish is acked (publishAsync resolves on PUBACK) and logged with the reason
  const logged = d.waitFor(/"clientId":"w","topic":"other\/1","reason":"not authorised","msg":"publish dropped"/)
  await w.publishAsync('other/1', 'x', { qos: 1 })
  await logged
  writeFileSync(f, 'pattern read new/#\npattern write old/#\npattern write new/#\n')
  const reloaded = d.waitFor(/auth provider reloaded/)
  d.proc.kill('SIGHUP')
  await reloaded
  got = collectUntil(r, 'new/end')
  for (const t of ['old/2', 'new/2', 'new/end']) await w.publishAsync(t, t, { qos: 1 })
  expect(await got).toEqual(['new/2', 'new/end'])
  expect(r.connected && w.connected).toBe(true)
})

test('an ACL file error at start-up names file:line and exits 3', async () => {
  const f = join(dir, 'bad.acl')
  writeFileSync(f, 'user x\ntopic read ok/#\ntopic read a/#/b\n')
  const conf = join(dir, 'bad.conf')
  writeFileSync(conf, `listener 0 127.0.0.1\nacl_file ${f}\n`)
  const r = await midge(['-c', conf])
  expect(r.code).toBe(3)
  expect(r.stderr.trim().split('\n').at(-1)).toBe(`Error: invalid topic filter "a/#/b" in acl_file (${f}:3).`)
})
