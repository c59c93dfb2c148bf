/** src/admin/files.ts: line-preserving edits of mosquitto password and ACL files. */
import { test, expect, onTestFinished } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuthFiles, ruleId } from '../../src/admin/files.js'
import { AdminError } from '../../src/admin/errors.js'
import { hashPassword } from '../../src/auth/password-hash.js'
import { FailureLimiter } from '../../src/admin/auth.js'

async function files (pw: string, acl: string): Promise<{ f: AuthFiles, dir: string, reloads: () => number }> {
  const dir = await mkdtemp(join(tmpdir(), 'midge-admin-files-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'pw'), pw, { mode: 0o640 })
  await writeFile(join(dir, 'acl'), acl)
  let n = 0
  const f = new AuthFiles({ passwordFile: join(dir, 'pw'), aclFile: join(dir, 'acl'), reload: async () => { n++ } })
  return { f, dir, reloads: () => n }
}

test('an anonymous rule goes before the first user line; a user rule into the user\'s last section; CRLF files are read', async () => {
  const { f, dir, reloads } = await files('', '# top\r\ntopic read public/#\r\n\r\nuser a\r\ntopic a/#\r\nuser b\r\ntopic b/#\r\nuser a\r\ntopic read x\r\n')
  await f.addRule({ kind: 'topic', user: null, access: 'write', topic: 'in/#' })
  await f.addRule({ kind: 'topic', user: 'a', access: 'deny', topic: 'a/secret' })
  await f.addRule({ kind: 'pattern', user: null, access: 'read', topic: 'd/%c/#' })
  expect(await readFile(join(dir, 'acl'), 'utf8')).toBe('# top\ntopic read public/#\ntopic write in/#\n\nuser a\ntopic a/#\nuser b\ntopic b/#\nuser a\ntopic read x\ntopic deny a/secret\n\npattern read d/%c/#\n')
  expect(reloads()).toBe(3)
  const rules = await f.listRules()
  expect(rules.map(r => [r.kind, r.user, r.access, r.topic])).toEqual([
    ['topic', null, 'read', 'public/#'], ['topic', null, 'write', 'in/#'], ['topic', 'a', 'readwrite', 'a/#'], ['topic', 'b', 'readwrite', 'b/#'],
    ['topic', 'a', 'read', 'x'], ['topic', 'a', 'deny', 'a/secret'], ['pattern', null, 'read', 'd/%c/#']
  ])
  expect(rules[2]!.id).toBe(ruleId('topic', 'a', 'readwrite', 'a/#'))
  // an anonymous rule and a user rule with the same text are different rules
  expect(ruleId('topic', null, 'read', 'x')).not.toBe(ruleId('topic', 'a', 'read', 'x'))
})

test('removing a rule removes every line of it; deleting a user removes every section of that user', async () => {
  const { f, dir } = await files(`a:${hashPassword('x')}\nb:${hashPassword('y')}\n`, 'user a\ntopic read x\nuser b\ntopic read x\nuser a\ntopic read x\npattern read p/%u\n')
  await f.removeRule(ruleId('topic', 'a', 'read', 'x'))
  expect(await readFile(join(dir, 'acl'), 'utf8')).toBe('user a\nuser b\ntopic read x\nuser a\npattern read p/%u\n')
  await f.deleteUser('a')
  expect(await readFile(join(dir, 'acl'), 'utf8')).toBe('user b\ntopic read x\npattern read p/%u\n')
  expect((await readFile(join(dir, 'pw'), 'utf8')).split('\n').map(l => l.split(':')[0])).toEqual(['b', ''])
})

test('disable keeps the hash as a comment and enable restores the same line; the file mode is kept', async () => {
  const line = `carol:${hashPassword('pw')}`
  const { f, dir } = await files(`# users\n${line}\n`, '')
  await f.updateUser('carol', { disabled: true })
  expect(await readFile(join(dir, 'pw'), 'utf8')).toBe(`# users\n#midge-disabled ${line}\n`)
  expect(await f.listUsers()).toEqual([{ username: 'carol', disabled: true }])
  await f.updateUser('carol', { disabled: false })
  expect(await readFile(join(dir, 'pw'), 'utf8')).toBe(`# users\n${line}\n`)
  expect((await stat(join(dir, 'pw'))).mode & 0o777).toBe(0o640)
})

test('a file with a line the broker rejects is not written, with a clear error; concurrent changes do not lose each other', async () => {
  const { f, dir, reloads } = await files('bad line without colon\n', 'user a\ntopic read a/#/b\n')
  const err = await f.createUser('dave', 'pw').catch((e: unknown) => e)
  expect(err).toBeInstanceOf(AdminError)
  expect((err as AdminError).code).toBe('MIDGE_ERR_ADMIN_FILE_INVALID')
  expect((err as AdminError).message).toContain(`${join(dir, 'pw')}:1: not a "username:hash" line`)
  expect(await readFile(join(dir, 'pw'), 'utf8')).toBe('bad line without colon\n')
  expect(await f.addRule({ kind: 'topic', user: 'a', access: 'read', topic: 'ok' }).catch((e: AdminError) => e.code)).toBe('MIDGE_ERR_ADMIN_FILE_INVALID')
  expect(reloads()).toBe(0)

  const good = await files('', '')
  await Promise.all(['u1', 'u2', 'u3', 'u4', 'u5'].map(u => good.f.createUser(u, 'pw')))
  expect((await good.f.listUsers()).map(u => u.username)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5'])
})

test('failed logins: 5 per address per window, then refused until the oldest leaves the window', () => {
  let now = 1_000_000
  const l = new FailureLimiter(5, 60_000, () => now)
  for (let i = 0; i < 5; i++) { l.check('a'); l.fail('a') }
  expect(() => l.check('a')).toThrow(/too many failed logins from a; try again in 60 s/)
  l.check('b')
  now += 59_999
  expect(() => l.check('a')).toThrow(AdminError)
  now += 1
  l.check('a')
})
