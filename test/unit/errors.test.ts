import { readFile } from 'node:fs/promises'
import { expect, test } from 'vitest'
import { ERR, BrokerError, MidgeError } from '../../src/errors.js'
import { ADMIN_ERR, AdminError } from '../../src/admin/errors.js'
import { CSR_ERR, CsrError } from '../../src/http/csr.js'

const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8')

test('every error code is in docs/errors.md, with its exit code or HTTP status', () => {
  for (const { code, exit } of Object.values(ERR)) expect(doc, code).toContain(`| \`${code}\` | ${exit} |`)
  for (const { code, status } of Object.values(ADMIN_ERR)) expect(doc, code).toContain(`| \`${code}\` | ${status} |`)
  for (const { code, status } of Object.values(CSR_ERR)) expect(doc, code).toContain(`| \`${code}\` | ${status} |`)
})

test('docs/errors.md lists no code that does not exist', () => {
  const known = new Set([...Object.values(ERR), ...Object.values(ADMIN_ERR), ...Object.values(CSR_ERR)].map(e => e.code))
  for (const [code] of doc.matchAll(/MIDGE_ERR_[A-Z_]+/g)) expect(known, code).toContain(code)
})

test('the three kinds of error are one family, each with its code', () => {
  const errors = [new BrokerError('LISTEN', 'x'), new AdminError('NOT_FOUND', 'x'), new CsrError('TOO_LARGE', 'x')]
  expect(errors.every(e => e instanceof MidgeError)).toBe(true)
  expect(errors.map(e => e.code)).toEqual(['MIDGE_ERR_LISTEN', 'MIDGE_ERR_ADMIN_NOT_FOUND', 'MIDGE_ERR_CSR_TOO_LARGE'])
  expect(new CsrError('TOO_LARGE', 'x').status).toBe(413)
})
