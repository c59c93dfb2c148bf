import { test, expect, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { statSync, readFileSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { makeTestCerts } from '../helpers/certs.js'

const certs = makeTestCerts()
afterAll(() => certs.remove())

const verify = (ca: string, cert: string, purpose: string): string => {
  try {
    return execFileSync('openssl', ['verify', '-CAfile', ca, '-purpose', purpose, cert], { encoding: 'utf8', stdio: 'pipe' }).trim()
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '')
  }
}

test('openssl verifies the server certificate against the CA, for TLS server use', () => {
  expect(verify(certs.ca, certs.server.cert, 'sslserver')).toBe(`${certs.server.cert}: OK`)
})

test('openssl verifies the client certificate for TLS client use', () => {
  expect(verify(certs.ca, certs.alice.cert, 'sslclient')).toBe(`${certs.alice.cert}: OK`)
})

test('a certificate from another CA does not verify', () => {
  expect(verify(certs.ca, certs.rogue.cert, 'sslclient')).toMatch(/unable to get local issuer certificate/)
})

test('server certificate names localhost and 127.0.0.1; CA is a CA; client CN is the given name', () => {
  const s = new X509Certificate(readFileSync(certs.server.cert))
  expect(s.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1')
  expect(s.checkHost('localhost')).toBe('localhost')
  expect(s.checkIP('127.0.0.1')).toBe('127.0.0.1')
  expect(new X509Certificate(readFileSync(certs.ca)).ca).toBe(true)
  expect(s.ca).toBe(false)
  expect(new X509Certificate(readFileSync(certs.alice.cert)).subject).toBe('CN=alice')
})

test('keys are written 0600, certificates 0644', () => {
  expect(statSync(certs.alice.key).mode & 0o777).toBe(0o600)
  expect(statSync(certs.server.key).mode & 0o777).toBe(0o600)
  expect(statSync(certs.server.cert).mode & 0o777).toBe(0o644)
})

test('the expired certificate has expired', () => {
  const e = new X509Certificate(readFileSync(certs.expired.cert))
  expect(Date.parse(e.validTo)).toBeLessThan(Date.now())
})
