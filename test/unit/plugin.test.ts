import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadAuthPlugin, authPluginFactory, redactAuthOptions } from '../../src/auth/plugin.js'
import { silentLogger } from '../../src/logging/logger.js'
import { defaultAuth } from '../../src/config/schema.js'

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'midge-plugin-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const mod = (name: string, text: string): string => { const f = join(dir, name); writeFileSync(f, text); return f }
const load = (path: string, options: Record<string, string> = {}) => loadAuthPlugin({ path, options }, silentLogger())

test.each([
  ['no factory', 'export const x = 1\n', 'it exports neither a default function nor createAuthProvider'],
  ['a factory returning nothing', 'export default () => undefined\n', 'its factory did not return an object'],
  ['a method that is not a function', 'export default () => ({ name: "p", authenticate: 1 })\n', 'authenticate is not a function'],
  ['no auth method at all', 'export default () => ({ name: "p", close () {} })\n', 'it implements none of authenticate, enhancedAuth, authorize, authorizeReceive'],
  ['a syntax error', 'export default (\n', 'unable to load auth_plugin']
])('refuses a plugin with %s', async (name, text, reason) => {
  const f = mod(`${name.replaceAll(' ', '-')}.mjs`, text)
  await expect(load(f)).rejects.toThrow(reason)
  await expect(load(f)).rejects.toMatchObject({ code: 'MIDGE_ERR_PLUGIN', exitCode: 1 })
})

test('options reach the factory frozen; createAuthProvider is accepted as a named export', async () => {
  const f = mod('named.mjs', 'export function createAuthProvider (o) { return { name: "n", async authenticate () { return Object.isFrozen(o) && o.k === "v" ? "allow" : "deny" } } }\n')
  const p = await load(f, { k: 'v' })
  expect(await p.authenticate!({ clientId: 'c', conn: {} as never })).toBe('allow')
})

test('several plugins: asked in order, defer passes on, only the methods some plugin has exist', async () => {
  const a = mod('a.mjs', 'export default () => ({ name: "a", async authenticate ({ username }) { return username === "a" ? "allow" : "defer" } })\n')
  const b = mod('b.mjs', 'export default () => ({ name: "b", async authenticate ({ username }) { return username === "b" ? "allow" : "deny" }, authorizeReceive () { return Promise.resolve("allow") } })\n')
  const p = (await authPluginFactory({ ...defaultAuth(), plugins: [{ path: a, options: {} }, { path: b, options: {} }] }, silentLogger()))!
  const req = (username: string) => ({ clientId: 'c', username, conn: {} as never })
  expect([await p.authenticate!(req('a')), await p.authenticate!(req('b')), await p.authenticate!(req('x'))]).toEqual(['allow', 'allow', 'deny'])
  expect(p.authorize).toBeUndefined()
  // a synchronous hook that returns a promise is a plugin bug: treated as deny, never as allow
  expect(p.authorizeReceive!({ clientId: 'c', topic: 't' })).toBe('deny')
})

test('redactAuthOptions hides secret-looking values but not file paths', () => {
  expect(JSON.parse(JSON.stringify({ db_password: 'x', api_token: 'y', secret_file: '/f', host: 'h' }, redactAuthOptions)))
    .toEqual({ db_password: '[redacted]', api_token: '[redacted]', secret_file: '/f', host: 'h' })
})
