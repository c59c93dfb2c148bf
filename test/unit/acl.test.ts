import { test, expect } from 'vitest'
import { Acl, AclFileProvider, parseAclFile, READ, WRITE, DENIED, READ_DENIED } from '../../src/auth/acl-file.js'
import { compileFilter, filterCovers, filterMatches, filtersOverlap } from '../../src/auth/topic-match.js'
import { BrokerError } from '../../src/errors.js'

const FILE = `# anonymous section
topic read public/#
topic write anon/in

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic home/shared
topic read $SYS/broker/uptime

user bob
topic #

user dave
topic write devices/+/locked

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny devices/%c/locked
`
const acl = () => new Acl(parseAclFile(FILE, 'acl'))
const access = (clientId: string, username: string | undefined, topic: string) => acl().client(clientId, username).accessTo(topic)

test.each([
  // [clientId, username, topic, expected bits]
  ['anon1', undefined, 'public/news', READ],
  ['anon1', undefined, 'anon/in', WRITE],
  ['anon1', undefined, 'home/alice/x', 0],
  ['c1', 'alice', 'public/news', 0], // a user does not inherit the anonymous section
  ['c1', 'alice', 'home/alice/lamp', READ | WRITE],
  ['c1', 'alice', 'home/alice', READ | WRITE], // a/# matches a
  ['c1', 'alice', 'home/alice/secret', DENIED], // deny before grant
  ['c1', 'alice', 'home/alice/secret/x', READ | WRITE], // deny is exact, not a prefix
  ['c1', 'alice', 'home/shared', READ | WRITE], // no access word: readwrite
  ['c1', 'alice', '$SYS/broker/uptime', READ],
  ['c1', 'bob', 'anything/at/all', READ | WRITE],
  ['c1', 'bob', '$SYS/broker/uptime', 0], // # does not match $ topics
  ['c1', 'bob', '$MIDGE/x', 0],
  ['dev7', 'bob', 'devices/dev7/locked', READ | WRITE], // the user's own grant is checked before pattern denies (as mosquitto 2.0.11)
  ['dev7', 'carol', 'devices/dev7/locked', DENIED], // ... which deny where the user's section grants nothing
  ['dev7', 'dave', 'devices/dev7/locked', WRITE | READ_DENIED], // dave's own section grants write only
  ['dev7', undefined, 'devices/dev7/temp', READ | WRITE], // %c pattern for anonymous too
  ['dev7', undefined, 'devices/dev8/temp', 0],
  ['dev7', 'carol', 'users/carol/inbox', READ], // %u pattern, user without a section
  ['dev7', 'carol', 'users/dave/inbox', 0],
  ['dev7', undefined, 'users//inbox', 0], // %u rules skipped without a username
  ['dev+', 'carol', 'devices/dev+/x', 0], // + or # in client id: no pattern applies
  ['d', 'car#', 'users/car#/inbox', 0]
] as const)('%s/%s on %s -> %i', (clientId, username, topic, bits) => {
  expect(access(clientId, username, topic)).toBe(bits)
})

test('filter matching: + one level, # any depth including the parent, $ topics need a $ filter', () => {
  const m = (f: string, t: string) => filterMatches(compileFilter(f), t, t.split('/'))
  expect([m('a/+', 'a/b'), m('a/+', 'a/b/c'), m('a/+', 'a'), m('+/+', '/x'), m('#', 'a/b'), m('#', '$SYS/x'), m('$SYS/#', '$SYS/x'), m('+/x', '$a/x')])
    .toEqual([true, false, false, true, true, false, true, false])
})

test('filterCovers: a subscription falls under a rule only if every topic it matches does', () => {
  const c = (rule: string, sub: string) => filterCovers(compileFilter(rule), sub)
  expect([c('a/#', 'a/b/+'), c('a/#', 'a'), c('a/#', 'a/#'), c('a/+', 'a/#'), c('a/+', 'a/b'), c('a/b', 'a/+'), c('a/b', 'a/b'), c('#', '$SYS/#'), c('+', '+'), c('a/b', 'a')])
    .toEqual([true, true, true, false, true, false, true, false, true, false])
})

test('filtersOverlap: some topic matches both', () => {
  const o = (a: string, b: string) => filtersOverlap(compileFilter(a), compileFilter(b))
  expect([o('a/+', 'a/b'), o('a/#', 'a'), o('a', 'a/b'), o('+/b', 'a/+'), o('a/b', 'a/c'), o('#', '$SYS/#'), o('$SYS/+', '$SYS/#')])
    .toEqual([true, true, false, true, false, false, true])
})

test('bad lines are refused with file:line, all of them, as a config error (exit 3, as mosquitto)', () => {
  let err: unknown
  try { parseAclFile('user alice\ntopic read a/#/b\nfoo bar\nuser\npattern\n', 'acl.txt') } catch (e) { err = e }
  expect(err).toBeInstanceOf(BrokerError)
  expect((err as BrokerError).exitCode).toBe(3)
  expect((err as BrokerError).problems).toEqual([
    'Error: invalid topic filter "a/#/b" in acl_file (acl.txt:2).',
    'Error: invalid line in acl_file: "foo" is not user, topic or pattern (acl.txt:3).',
    'Error: missing username in acl_file (acl.txt:4).',
    'Error: missing topic in acl_file (acl.txt:5).'
  ])
})

test('"topic read" alone is a rule for the topic "read", as mosquitto reads it', () => {
  expect(parseAclFile('topic read\n', 'f').anonymous.map(x => [x.access, x.filter])).toEqual([[READ | WRITE, 'read']])
})

test('topics with spaces and the default access', () => {
  const r = parseAclFile('topic a topic/with space\ntopic deny  x y \n', 'f')
  expect(r.anonymous.map(x => [x.access, x.filter])).toEqual([[READ | WRITE, 'a topic/with space'], [0, 'x y']])
})

test('per-topic results are cached and the caches are bounded', () => {
  const a = new Acl(parseAclFile(FILE, 'acl'), { maxClients: 2, topicsPerClient: 4 })
  const c = a.client('c1', 'alice')
  for (let i = 0; i < 100; i++) expect(c.accessTo(`home/alice/${i}`)).toBe(READ | WRITE)
  expect((c as unknown as { cache: Map<string, number> }).cache.size).toBeLessThanOrEqual(4)
  a.client('x', 'bob'); a.client('y', 'bob')
  expect((a as unknown as { clients: Map<string, unknown> }).clients.size).toBe(2)
  expect(a.client('c1', 'alice')).not.toBe(c) // evicted, compiled again
})

test('provider answers: subscribe denied only when the filter falls under a deny rule; publish and receive defer when nothing grants', async () => {
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const dir = mkdtempSync(join(tmpdir(), 'midge-acl-'))
  try {
    const f = join(dir, 'acl')
    writeFileSync(f, FILE)
    const { silentLogger } = await import('../../src/logging/logger.js')
    const p = new AclFileProvider(f, silentLogger())
    const base = { clientId: 'c1', username: 'alice', conn: {} as never, qos: 0 as const, retain: false }
    expect(await p.authorize({ ...base, action: 'subscribe', topic: 'home/alice/secret' })).toBe('deny')
    expect(await p.authorize({ ...base, action: 'subscribe', topic: 'home/alice/#' })).toBe('allow')
    expect(await p.authorize({ ...base, action: 'subscribe', topic: 'nothing/granted' })).toBe('allow')
    expect(await p.authorize({ ...base, action: 'publish', topic: 'home/alice/secret' })).toBe('deny')
    expect(await p.authorize({ ...base, action: 'publish', topic: 'home/alice/x' })).toBe('allow')
    expect(await p.authorize({ ...base, action: 'publish', topic: 'elsewhere' })).toBe('defer')
    expect(p.authorizeReceive({ clientId: 'c1', username: 'alice', topic: '$SYS/broker/uptime' })).toBe('allow')
    expect(p.authorizeReceive({ clientId: 'c1', username: 'alice', topic: 'home/alice/secret' })).toBe('deny')
    // reload: a broken file keeps the old rules
    writeFileSync(f, 'user alice\ntopic bogus/#/x\n')
    await expect(p.reload()).rejects.toThrow('invalid topic filter "bogus/#/x" in acl_file')
    expect(p.authorizeReceive({ clientId: 'c1', username: 'alice', topic: 'home/alice/x' })).toBe('allow')
    writeFileSync(f, 'user alice\ntopic read other\n')
    await p.reload()
    expect(p.authorizeReceive({ clientId: 'c1', username: 'alice', topic: 'home/alice/x' })).toBe('defer')
    expect(p.authorizeReceive({ clientId: 'c1', username: 'alice', topic: 'other' })).toBe('allow')
  } finally { rmSync(dir, { recursive: true }) }
})
