/**
 * mosquitto_passwd hashes, in node:crypto (REFERENCE.md "Password file"):
 * - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash (mosquitto 2.0 writes 101 iterations)
 * - `$6$SALT$HASH`: SHA-512 over password bytes then salt bytes (mosquitto 1.x files)
 * Salt and hash are standard base64 with padding. Comparison is constant time.
 */
import { createHash, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const pbkdf2Async = promisify(pbkdf2)

export const SALT_LEN = 12
const HASH_LEN = 64
/** What mosquitto 2.0.11's mosquitto_passwd writes; Debian's mosquitto reads any count. */
export const DEFAULT_ITERATIONS = 101
/** Refuse absurd counts from a file (a line with 10^9 iterations would stall every login). */
const MAX_ITERATIONS = 10_000_000

export type ParsedHash =
  | { type: 6, salt: Buffer, hash: Buffer }
  | { type: 7, iterations: number, salt: Buffer, hash: Buffer }

const B64 = /^[A-Za-z0-9+/]+={0,2}$/

function b64 (s: string | undefined): Buffer | undefined {
  if (s === undefined || s === '' || !B64.test(s)) return undefined
  return Buffer.from(s, 'base64')
}

/** Parses the part after `username:`; undefined when it is not a hash mosquitto would accept. */
export function parseHash (text: string): ParsedHash | undefined {
  const parts = text.split('$')
  // '' , '6'|'7', ...
  if (parts[0] !== '') return undefined
  if (parts[1] === '6' && parts.length === 4) {
    const salt = b64(parts[2]); const hash = b64(parts[3])
    if (!salt || !hash || hash.length !== HASH_LEN) return undefined
    return { type: 6, salt, hash }
  }
  if (parts[1] === '7' && parts.length === 5) {
    if (!/^\d{1,8}$/.test(parts[2] ?? '')) return undefined
    const iterations = Number(parts[2])
    if (iterations < 1 || iterations > MAX_ITERATIONS) return undefined
    const salt = b64(parts[3]); const hash = b64(parts[4])
    if (!salt || !hash || hash.length !== HASH_LEN) return undefined
    return { type: 7, iterations, salt, hash }
  }
  return undefined
}

async function digest (h: ParsedHash, password: Buffer): Promise<Buffer> {
  if (h.type === 6) return createHash('sha512').update(password).update(h.salt).digest()
  // off the event loop: a file may carry a large iteration count
  return pbkdf2Async(password, h.salt, h.iterations, HASH_LEN, 'sha512')
}

/** Constant-time comparison of the derived hash with the stored one. */
export async function verifyPassword (h: ParsedHash, password: Buffer): Promise<boolean> {
  return timingSafeEqual(await digest(h, password), h.hash)
}

/** A `$7$` hash as mosquitto_passwd 2.0 writes it. */
export function hashPassword (password: string | Buffer, iterations = DEFAULT_ITERATIONS, salt = randomBytes(SALT_LEN)): string {
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password
  const hash = pbkdf2Sync(pw, salt, iterations, HASH_LEN, 'sha512')
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** A `$6$` hash (mosquitto 1.x); only for tests and upgrades of old files. */
export function hashPasswordSha512 (password: string | Buffer, salt = randomBytes(SALT_LEN)): string {
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password
  const hash = createHash('sha512').update(pw).update(salt).digest()
  return `$6$${salt.toString('base64')}$${hash.toString('base64')}`
}

/**
 * A hash that costs as much to check as a real one, for unknown users: the answer time must not tell an
 * attacker which user names exist.
 */
export const DUMMY_HASH: ParsedHash = { type: 7, iterations: DEFAULT_ITERATIONS, salt: Buffer.alloc(SALT_LEN), hash: Buffer.alloc(HASH_LEN) }
