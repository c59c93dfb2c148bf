/**
 * `password_file`: mosquitto_passwd's format, `username:HASH` per line (`$6$` or `$7$`, see password-hash.ts).
 * A line mosquitto would not accept is skipped with an error naming file:line, as mosquitto 2.0 does
 * ("Invalid password hash type for user bob, removing entry."). A missing or unreadable file stops start-up.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { BrokerError, fileErrorReason } from '../errors.js'
import type { Logger } from '../logging/logger.js'
import type { AuthProvider, AuthProviderFactory, AuthenticateRequest, AuthResult } from './types.js'
import { DUMMY_HASH, parseHash, verifyPassword, type ParsedHash } from './password-hash.js'

export interface PasswordTable {
  users: Map<string, ParsedHash>
  /** Lines skipped, each `file:line: reason` (never the hash or a password). */
  problems: string[]
}

export function parsePasswordFile (text: string, file: string): PasswordTable {
  const users = new Map<string, ParsedHash>()
  const problems: string[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const at = `${file}:${i + 1}`
    const colon = line.indexOf(':')
    if (colon <= 0) { problems.push(`${at}: not a "username:hash" line, ignored.`); continue }
    const user = line.slice(0, colon)
    const hash = parseHash(line.slice(colon + 1))
    if (!hash) { problems.push(`${at}: invalid password hash type for user ${user}, removing entry (run "midge passwd -U ${file}" on a plain-text file).`); continue }
    if (users.has(user)) problems.push(`${at}: user ${user} appears again; the later line wins.`)
    users.set(user, hash)
  }
  return { users, problems }
}

function readError (file: string, err: unknown): BrokerError {
  return new BrokerError('AUTH_FILE', `Error: unable to open password_file "${file}": ${fileErrorReason(err)}.`, { cause: err })
}

export class PasswordFileProvider implements AuthProvider {
  readonly name: string
  private table: PasswordTable

  constructor (readonly file: string, private readonly log: Logger) {
    this.name = `password_file ${file}`
    let text: string
    try { text = readFileSync(file, 'utf8') } catch (err) { throw readError(file, err) }
    this.table = parsePasswordFile(text, file)
    this.report()
  }

  private report (): void {
    for (const p of this.table.problems) this.log.error(`Error: ${p}`)
  }

  async authenticate (req: AuthenticateRequest): Promise<AuthResult> {
    if (req.username === undefined) return 'defer'
    const h = this.table.users.get(req.username)
    if (!h) {
      // same work as for a known user, so the answer time does not reveal which user names exist
      await verifyPassword(DUMMY_HASH, req.password ?? Buffer.alloc(0))
      return 'defer' // not ours: a later provider (auth_plugin) may know the user; if none does, the chain denies
    }
    if (req.password === undefined) return 'deny'
    return (await verifyPassword(h, req.password)) ? 'allow' : 'deny'
  }

  /**
   * SIGHUP: an unreadable file, or one with a bad line, keeps the old table (nobody loses access because of a
   * typo) and throws so the chain logs why.
   */
  async reload (): Promise<void> {
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch (err) { throw readError(this.file, err) }
    const next = parsePasswordFile(text, this.file)
    if (next.problems.length > 0) throw new BrokerError('AUTH_FILE', next.problems.join(' '))
    this.table = next
  }
}

export const passwordFileFactory: AuthProviderFactory = async (auth, log) =>
  auth.passwordFile ? new PasswordFileProvider(auth.passwordFile, log) : undefined
