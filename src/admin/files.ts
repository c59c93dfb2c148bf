/**
 * Changes made through the admin API land in the broker's own `password_file` and `acl_file`, in the formats
 * mosquitto reads, so the files stay the single source of truth (mosquitto can still use them, SIGHUP still
 * works, a backup is a copy of two text files). Each change:
 *   1. re-reads the file (someone may have edited it by hand), edits it line by line, keeping comments,
 *      blank lines and the order of everything it does not touch;
 *   2. parses the result with the same parser the broker uses and refuses to write a file it would reject;
 *   3. writes it atomically (temp file in the same directory, fsync, rename, same mode);
 *   4. reloads the auth chain (as SIGHUP does for these files), so the change applies to the next CONNECT and, for ACL rules, to the very
 *      next message of existing subscriptions.
 * Changes are serialised: two requests never interleave their read-modify-write.
 *
 * A disabled user stays in the password file as a comment, `#midge-disabled NAME:HASH`: mosquitto and Midge
 * both skip comment lines, so the user cannot log in anywhere, and enabling it again restores the same hash.
 */
import { createHash, randomBytes } from 'node:crypto'
import { open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { parsePasswordFile } from '../auth/password-file.js'
import { parseAclFile } from '../auth/acl-file.js'
import { hashPassword } from '../auth/password-hash.js'
import { AdminError } from './errors.js'

export const DISABLED_PREFIX = '#midge-disabled '

export type Access = 'read' | 'write' | 'readwrite' | 'deny'
export const ACCESS_WORDS: readonly Access[] = ['read', 'write', 'readwrite', 'deny']

export interface UserEntry { username: string, disabled: boolean }

export interface AclRuleView {
  /** Content-derived id: the same rule always has the same id (sha256 of kind, user, access, topic; 16 hex). */
  id: string
  /** `topic` rules belong to a user (or to anonymous clients when `user` is null); `pattern` rules to everyone. */
  kind: 'topic' | 'pattern'
  user: string | null
  access: Access
  topic: string
}

export function ruleId (kind: string, user: string | null, access: string, topic: string): string {
  return createHash('sha256').update(`${kind}\u0000${user ?? '\u0001'}\u0000${access}\u0000${topic}`).digest('hex').slice(0, 16)
}

// ------------------------------------------------------------------------------------------- atomic write

/** Writes `text` to `file` atomically: temp file beside it, fsync, rename; keeps the file's mode (0600 if new). */
export async function writeFileAtomic (file: string, text: string): Promise<void> {
  let mode = 0o600
  try { mode = (await stat(file)).mode & 0o777 } catch { /* new file */ }
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', mode)
    try {
      await fh.writeFile(text, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    // the temp file may never have been created; the write's own error is the one to report
    await unlink(tmp).catch(() => {})
    throw new AdminError('FILE_WRITE', `could not write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

async function readText (file: string): Promise<string> {
  try { return await readFile(file, 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw new AdminError('FILE_WRITE', `could not read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

function splitLines (text: string): string[] {
  const lines = text.split('\n').map(l => l.replace(/\r$/, ''))
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  return lines
}

function joinLines (lines: string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`
}

// ------------------------------------------------------------------------------------------ password file

interface PwLine { user: string, hash: string, disabled: boolean }

function pwLine (raw: string): PwLine | undefined {
  let line = raw.trim()
  let disabled = false
  if (line.startsWith(DISABLED_PREFIX)) { disabled = true; line = line.slice(DISABLED_PREFIX.length) } else if (line === '' || line.startsWith('#')) return undefined
  const colon = line.indexOf(':')
  if (colon <= 0) return undefined
  return { user: line.slice(0, colon), hash: line.slice(colon + 1), disabled }
}

function checkPasswordText (file: string, text: string): void {
  const { problems } = parsePasswordFile(text, file)
  if (problems.length > 0) throw new AdminError('FILE_INVALID', `${file} has lines the broker rejects; fix them first: ${problems.join(' ')}`)
}

// ----------------------------------------------------------------------------------------------- ACL file

type AclLine =
  | { type: 'user', user: string }
  | { type: 'rule', kind: 'topic' | 'pattern', access: Access, topic: string, section: string | null }
  | { type: 'other' }

/** Classifies each line as parseAclFile does (keyword, access word, filter = rest of the line). */
function aclLines (lines: string[]): AclLine[] {
  let section: string | null = null
  return lines.map((raw): AclLine => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return { type: 'other' }
    const m = /^(\S+)\s*(.*)$/.exec(line)!
    const keyword = m[1]!
    const rest = m[2]!
    if (keyword === 'user') { section = rest; return { type: 'user', user: rest } }
    if (keyword !== 'topic' && keyword !== 'pattern') return { type: 'other' }
    const a = /^(read|write|readwrite|deny)\s+(.+)$/.exec(rest)
    return { type: 'rule', kind: keyword, access: (a ? a[1] : 'readwrite') as Access, topic: a ? a[2]!.trim() : rest, section: keyword === 'pattern' ? null : section }
  })
}

function checkAclText (file: string, text: string): void {
  try { parseAclFile(text, file) } catch (err) {
    throw new AdminError('FILE_INVALID', `${file} has lines the broker rejects; fix them first: ${(err as Error).message}`)
  }
}

// ---------------------------------------------------------------------------------------------- the editor

export interface AuthFilesOptions {
  passwordFile?: string
  aclFile?: string
  /** Applies the written files (Broker.reload). */
  reload: () => Promise<void>
}

export class AuthFiles {
  private queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly opts: AuthFilesOptions) {}

  get passwordFile (): string | undefined { return this.opts.passwordFile }
  get aclFile (): string | undefined { return this.opts.aclFile }

  /** Runs one read-modify-write at a time. */
  private serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    // the caller gets the failure from `run`; the queue only orders the next edit after this one
    this.queue = run.catch(() => {})
    return run
  }

  private pwFile (): string {
    if (!this.opts.passwordFile) throw new AdminError('NO_PASSWORD_FILE', 'no password_file is configured: users cannot be managed (set password_file in the config)')
    return this.opts.passwordFile
  }

  private aclPath (): string {
    if (!this.opts.aclFile) throw new AdminError('NO_ACL_FILE', 'no acl_file is configured: ACL rules cannot be managed (set acl_file in the config)')
    return this.opts.aclFile
  }

  async listUsers (): Promise<UserEntry[]> {
    const file = this.pwFile()
    const seen = new Map<string, UserEntry>()
    for (const raw of splitLines(await readText(file))) {
      const l = pwLine(raw)
      if (l) seen.set(l.user, { username: l.user, disabled: l.disabled })
    }
    return [...seen.values()].sort((a, b) => a.username < b.username ? -1 : a.username > b.username ? 1 : 0)
  }

  createUser (username: string, password: string): Promise<void> {
    return this.serial(async () => {
      const file = this.pwFile()
      const lines = splitLines(await readText(file))
      if (lines.some(r => pwLine(r)?.user === username)) throw new AdminError('USER_EXISTS', `user ${username} already exists`)
      lines.push(`${username}:${hashPassword(password)}`)
      await this.commitPasswords(file, lines)
    })
  }

  /** Changes the password and/or the disabled flag (a disabled user keeps its hash, commented out). */
  updateUser (username: string, change: { password?: string, disabled?: boolean }): Promise<void> {
    return this.serial(async () => {
      const file = this.pwFile()
      const lines = splitLines(await readText(file))
      let found = false
      const out = lines.map(raw => {
        const l = pwLine(raw)
        if (!l || l.user !== username) return raw
        found = true
        const hash = change.password !== undefined ? hashPassword(change.password) : l.hash
        const disabled = change.disabled ?? l.disabled
        return `${disabled ? DISABLED_PREFIX : ''}${username}:${hash}`
      })
      if (!found) throw new AdminError('USER_NOT_FOUND', `no user ${username}`)
      await this.commitPasswords(file, out)
    })
  }

  /** Removes the user from the password file and the user's section from the ACL file (if any). */
  deleteUser (username: string): Promise<void> {
    return this.serial(async () => {
      const file = this.pwFile()
      const lines = splitLines(await readText(file))
      const out = lines.filter(raw => pwLine(raw)?.user !== username)
      if (out.length === lines.length) throw new AdminError('USER_NOT_FOUND', `no user ${username}`)
      let aclOut: string[] | undefined
      const acl = this.opts.aclFile
      if (acl) {
        const al = splitLines(await readText(acl))
        const kinds = aclLines(al)
        let inSection = false
        aclOut = al.filter((_raw, i) => {
          const k = kinds[i]!
          if (k.type === 'user') inSection = k.user === username
          if (k.type === 'rule' && k.kind === 'pattern') return true
          return !inSection
        })
        while (aclOut.length > 0 && aclOut[aclOut.length - 1]!.trim() === '') aclOut.pop()
        checkAclText(acl, joinLines(aclOut))
      }
      checkPasswordText(file, joinLines(out))
      await writeFileAtomic(file, joinLines(out))
      if (acl && aclOut) await writeFileAtomic(acl, joinLines(aclOut))
      await this.opts.reload()
    })
  }

  private async commitPasswords (file: string, lines: string[]): Promise<void> {
    const text = joinLines(lines)
    checkPasswordText(file, text)
    await writeFileAtomic(file, text)
    await this.opts.reload()
  }

  async listRules (): Promise<AclRuleView[]> {
    const lines = aclLines(splitLines(await readText(this.aclPath())))
    const out: AclRuleView[] = []
    const ids = new Set<string>()
    for (const l of lines) {
      if (l.type !== 'rule') continue
      const id = ruleId(l.kind, l.section, l.access, l.topic)
      if (ids.has(id)) continue
      ids.add(id)
      out.push({ id, kind: l.kind, user: l.section, access: l.access, topic: l.topic })
    }
    return out
  }

  /**
   * Adds a rule where a person would: a user's rule at the end of that user's (last) section, or in a new
   * `user NAME` section at the end; an anonymous rule before the first `user` line; a pattern after the last
   * pattern (or at the end).
   */
  addRule (rule: { kind: 'topic' | 'pattern', user: string | null, access: Access, topic: string }): Promise<AclRuleView> {
    return this.serial(async () => {
      const file = this.aclPath()
      const user = rule.kind === 'pattern' ? null : rule.user
      const id = ruleId(rule.kind, user, rule.access, rule.topic)
      const lines = splitLines(await readText(file))
      const kinds = aclLines(lines)
      if (kinds.some(k => k.type === 'rule' && ruleId(k.kind, k.section, k.access, k.topic) === id)) {
        throw new AdminError('RULE_EXISTS', 'the same rule already exists')
      }
      const text = `${rule.kind} ${rule.access} ${rule.topic}`
      if (rule.kind === 'pattern') {
        const last = kinds.findLastIndex(k => k.type === 'rule' && k.kind === 'pattern')
        if (last >= 0) lines.splice(last + 1, 0, text)
        else {
          if (lines.length > 0 && lines[lines.length - 1]!.trim() !== '') lines.push('')
          lines.push(text)
        }
      } else if (user === null) {
        const firstUser = kinds.findIndex(k => k.type === 'user')
        if (firstUser < 0) lines.push(text)
        else {
          let at = firstUser
          while (at > 0 && lines[at - 1]!.trim() === '') at--
          lines.splice(at, 0, text)
        }
      } else {
        let start = -1
        for (let i = kinds.length - 1; i >= 0; i--) {
          const k = kinds[i]!
          if (k.type === 'user' && k.user === user) { start = i; break }
        }
        if (start < 0) {
          if (lines.length > 0 && lines[lines.length - 1]!.trim() !== '') lines.push('')
          lines.push(`user ${user}`, text)
        } else {
          // after the last topic line of that section
          let at = start + 1
          for (let i = start + 1; i < kinds.length; i++) {
            const k = kinds[i]!
            if (k.type === 'user') break
            if (k.type === 'rule' && k.kind === 'topic') at = i + 1
          }
          lines.splice(at, 0, text)
        }
      }
      const out = joinLines(lines)
      checkAclText(file, out)
      await writeFileAtomic(file, out)
      await this.opts.reload()
      return { id, kind: rule.kind, user, access: rule.access, topic: rule.topic }
    })
  }

  /** Removes every line of the rule with this id. */
  removeRule (id: string): Promise<void> {
    return this.serial(async () => {
      const file = this.aclPath()
      const lines = splitLines(await readText(file))
      const kinds = aclLines(lines)
      const out = lines.filter((_raw, i) => {
        const k = kinds[i]!
        return !(k.type === 'rule' && ruleId(k.kind, k.section, k.access, k.topic) === id)
      })
      if (out.length === lines.length) throw new AdminError('RULE_NOT_FOUND', `no ACL rule with id ${id}`)
      const text = joinLines(out)
      checkAclText(file, text)
      await writeFileAtomic(file, text)
      await this.opts.reload()
    })
  }
}
