import { randomBytes } from 'node:crypto'

/**
 * A random 128-bit certificate serial number, as hex for node-forge. It must be positive (RFC 5280 4.1.2.2) and
 * DER-minimal: node-forge writes the hex as it is, so a first byte of 0x00 followed by one below 0x80 is an
 * over-long INTEGER that OpenSSL 3 refuses ("illegal padding"), which with a merely cleared top bit happened to 1
 * certificate in about 256. The first byte is kept in 0x40..0x7f: positive, and never a padding byte.
 */
export function randomSerial (): string {
  const b = randomBytes(16)
  b[0] = (b[0]! & 0x3f) | 0x40
  return b.toString('hex')
}
