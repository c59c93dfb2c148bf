import { test, expect } from 'vitest'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { randomSerial } from '../../src/util/serial.js'
import { createCa } from '../../src/cli/certs.js'

test('certificate serials are positive and DER-minimal: the first byte is 0x40..0x7f', () => {
  for (let i = 0; i < 2000; i++) {
    const first = parseInt(randomSerial().slice(0, 2), 16)
    expect(first).toBeGreaterThanOrEqual(0x40)
    expect(first).toBeLessThanOrEqual(0x7f)
  }
})

test('OpenSSL reads every certificate `midge certs` makes (a serial with a padding byte made 1 in about 256 unreadable)', () => {
  for (let i = 0; i < 20; i++) {
    const ca = createCa(`CA ${i}`)
    const x = new X509Certificate(ca.cert)
    expect(x.serialNumber).toMatch(/^[4-7][0-9A-F]{31}$/)
    expect(createPrivateKey(ca.key).asymmetricKeyType).toBe('rsa')
  }
})
