/**
 * Throw-away certificates made at test time with Midge's own `midge certs` code (never committed):
 * a CA, a server certificate for localhost/127.0.0.1, client certificates, an expired server certificate and a
 * client certificate from a CA the broker does not trust. Written to a temp dir (keys 0600) once per test file.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCa, createClientCert, createServerCert, writePem } from '../../src/cli/certs.js'

export interface TestCerts {
  dir: string
  ca: string
  server: { cert: string, key: string }
  expired: { cert: string, key: string }
  /** CN "alice" */
  alice: { cert: string, key: string }
  /** CN "bob" */
  bob: { cert: string, key: string }
  /** CN "mallory", signed by another CA */
  rogue: { cert: string, key: string }
  remove (): void
}

export function makeTestCerts (): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'midge-certs-'))
  const ca = createCa('Midge Test CA')
  const caFiles = writePem(dir, 'ca', ca)
  const day = 86_400_000
  const otherCa = createCa('Other CA')
  // four RSA keys in all (key generation dominates on a loaded 2-core machine): the expired server certificate
  // reuses the server key, bob and mallory reuse alice's; every certificate is still distinct
  const server = createServerCert(ca, ['localhost', '127.0.0.1'])
  const alice = createClientCert(ca, 'alice')
  return {
    dir,
    ca: caFiles.cert,
    server: writePem(dir, 'server', server),
    expired: writePem(dir, 'expired', createServerCert(ca, ['localhost', '127.0.0.1'], { key: server.key, notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) })),
    alice: writePem(dir, 'alice', alice),
    bob: writePem(dir, 'bob', createClientCert(ca, 'bob', { key: alice.key })),
    rogue: writePem(dir, 'rogue', createClientCert(otherCa, 'mallory', { key: alice.key })),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}
