import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuthChain } from '../../src/auth/chain.js'
import { silentLogger } from '../../src/logging/logger.js'
import type { AuthorizeRequest } from '../../src/auth/types.js'
import { load } from '../helpers/config.js'

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'midge-chain-now-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const file = (name: string, text: string): string => { const f = join(dir, name); writeFileSync(f, text); return f }
const chainOf = async (conf: string): Promise<{ chain: AuthChain, req: (r: Partial<AuthorizeRequest>) => AuthorizeRequest }> => {
  const cfg = load(conf)
  const chain = await AuthChain.create(cfg, silentLogger())
  const conn = { listener: cfg.listeners[0]! } as never
  return { chain, req: r => ({ clientId: 'c1', conn, action: 'publish', topic: 't', qos: 0, retain: false, ...r }) }
}

test('without an ACL every publish is allowed at once', async () => {
  const { chain, req } = await chainOf('listener 1883\nallow_anonymous true\n')
  expect(chain.authorizeNow(req({ topic: 'a/b' }))).toBe(true)
  expect(await chain.authorize(req({ topic: 'a/b' }))).toBe(true)
})

test('an acl_file answers at once, with the verdicts authorize gives', async () => {
  const acl = file('acl', 'topic write anon/in\nuser alice\ntopic readwrite home/alice/#\ntopic deny home/alice/secret\n')
  const { chain, req } = await chainOf(`listener 1883\nallow_anonymous true\nacl_file ${acl}\n`)
  const cases: Array<[Partial<AuthorizeRequest>, boolean]> = [
    [{ topic: 'anon/in' }, true],
    [{ topic: 'anon/out' }, false], // nothing grants: deny
    [{ username: 'alice', topic: 'home/alice/lamp' }, true],
    [{ username: 'alice', topic: 'home/alice/secret' }, false],
    [{ username: 'alice', topic: 'anon/in' }, false], // a user does not inherit the anonymous section
    [{ username: 'alice', action: 'subscribe', topic: 'home/alice/secret' }, false],
    [{ username: 'alice', action: 'subscribe', topic: 'nothing/granted' }, true] // filtered on delivery, as mosquitto 2.0
  ]
  for (const [r, ok] of cases) {
    expect(chain.authorizeNow(req(r)), JSON.stringify(r)).toBe(ok)
    expect(await chain.authorize(req(r)), JSON.stringify(r)).toBe(ok)
  }
})

test('a plugin that authorises makes the chain wait for it', async () => {
  const plugin = file('p.mjs', 'export default () => ({ name: "p", async authorize ({ topic }) { return topic === "ok" ? "allow" : "deny" } })\n')
  const acl = file('acl2', 'topic write anon/in\n')
  const { chain, req } = await chainOf(`listener 1883\nallow_anonymous true\nacl_file ${acl}\nauth_plugin ${plugin}\n`)
  expect(chain.authorizeNow(req({ topic: 'anon/in' }))).toBeUndefined()
  expect(chain.authorizeNow(req({ topic: 'ok' }))).toBeUndefined()
  expect(await chain.authorize(req({ topic: 'ok' }))).toBe(true)
  expect(await chain.authorize(req({ topic: 'anon/in' }))).toBe(true)
  expect(await chain.authorize(req({ topic: 'other' }))).toBe(false)
})
