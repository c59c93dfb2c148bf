import { test, expect } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pbkdf2Sync } from 'node:crypto'
import { hashPassword, hashPasswordSha512, parseHash, verifyPassword, DEFAULT_ITERATIONS } from '../../src/auth/password-hash.js'
import { parsePasswordFile } from '../../src/auth/password-file.js'

const pw = (s: string) => Buffer.from(s)

test('a $7$ line written by Debian mosquitto_passwd verifies, and a wrong password does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'midge-pw-'))
  try {
    const file = join(dir, 'pw')
    execFileSync('mosquitto_passwd', ['-c', '-b', file, 'alice', 'secret'])
    const line = readFileSync(file, 'utf8').trim()
    expect(line).toMatch(/^alice:\$7\$101\$/)
    const h = parseHash(line.slice('alice:'.length))!
    expect(h).toMatchObject({ type: 7, iterations: 101 })
    expect(await verifyPassword(h, pw('secret'))).toBe(true)
    expect(await verifyPassword(h, pw('secreT'))).toBe(false)
    expect(await verifyPassword(h, pw(''))).toBe(false)
  } finally { rmSync(dir, { recursive: true }) }
})

test('hashPassword writes mosquitto 2.0 $7$ format: 101 iterations, 12-byte salt, 64-byte PBKDF2-SHA512', () => {
  const salt = Buffer.from('000102030405060708090a0b', 'hex')
  const h = hashPassword('secret', DEFAULT_ITERATIONS, salt)
  const [, type, iter, s64, h64] = h.split('$')
  expect([type, iter, s64]).toEqual(['7', '101', salt.toString('base64')])
  expect(Buffer.from(h64!, 'base64')).toEqual(pbkdf2Sync('secret', salt, 101, 64, 'sha512'))
})

test('$6$ (salted SHA-512, mosquitto 1.x) verifies', async () => {
  const h = parseHash(hashPasswordSha512('old-pw'))!
  expect(h.type).toBe(6)
  expect(await verifyPassword(h, pw('old-pw'))).toBe(true)
  expect(await verifyPassword(h, pw('old-pw '))).toBe(false)
})

test.each([
  ['plain text', 'secret'],
  ['unknown type', '$5$abc$def'],
  ['$7$ without iterations', '$7$c2FsdA==$aGFzaA=='],
  ['$7$ with a short hash', '$7$101$AAECAwQFBgcICQoL$AAAA'],
  ['$7$ with zero iterations', `$7$0$AAECAwQFBgcICQoL$${Buffer.alloc(64).toString('base64')}`],
  ['$6$ with non-base64 salt', `$6$***$${Buffer.alloc(64).toString('base64')}`],
  ['empty', '']
])('refuses a hash that is %s', (_name, text) => {
  expect(parseHash(text)).toBeUndefined()
})

test('password file: comments and blank lines skipped, bad lines reported with file:line and skipped, last duplicate wins', () => {
  const a = hashPassword('a')
  const b = hashPassword('b')
  const t = parsePasswordFile(`# users\r\nalice:${a}\r\n\nbob:plaintext\nnocolon\ncarol:${a}\ncarol:${b}\n`, 'pw.txt')
  expect([...t.users.keys()]).toEqual(['alice', 'carol'])
  expect(t.problems).toEqual([
    'pw.txt:4: invalid password hash type for user bob, removing entry (run "midge passwd -U pw.txt" on a plain-text file).',
    'pw.txt:5: not a "username:hash" line, ignored.',
    'pw.txt:7: user carol appears again; the later line wins.'
  ])
  expect(t.problems.join('')).not.toContain('plaintext')
})
