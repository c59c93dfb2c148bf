/**
 * `acl_file` in mosquitto syntax with mosquitto 2.0's semantics (REFERENCE.md "ACL file"):
 * - lines before the first `user` line are for anonymous clients only; `user NAME` starts that user's section;
 *   `pattern` lines apply to every client, with `%c` (client id) and `%u` (username) substituted;
 * - `topic [read|write|readwrite|deny] FILTER` (no access word: readwrite);
 * - the client's own section first, then the patterns, each with its deny rules before its grants; what no rule
 *   grants is denied (the provider defers, the chain denies);
 * - a rule that does not start with `$` never matches a `$` topic;
 * - a client id or username containing `+` or `#` gets no pattern rules at all (topic injection).
 * Beyond mosquitto 2.0: a subscription whose filter falls entirely under a `deny` rule is refused (SUBACK 0x80, for
 * v5 clients too).
 *
 * The read check runs for every delivered message (aedes authorizeForward, synchronous), so rules are compiled
 * once per (username, client id) and results are cached per topic; both caches are bounded, and a reload
 * starts them afresh.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { BrokerError, fileErrorReason } from '../errors.js'
import type { Logger } from '../logging/logger.js'
import type { AuthProvider, AuthProviderFactory, AuthorizeRequest, AuthResult, ReceiveRequest } from './types.js'
import { compileFilter, filterCovers, filterMatches, filtersOverlap, validFilter, type CompiledFilter } from './topic-match.js'

export const READ = 1
export const WRITE = 2
/** Bits set when a deny rule took read/write away: the answer is 'deny', not 'defer'. */
export const READ_DENIED = READ << 2
export const WRITE_DENIED = WRITE << 2
export const DENIED = READ_DENIED | WRITE_DENIED
const ACCESS: Record<string, number> = { read: READ, write: WRITE, readwrite: READ | WRITE, deny: 0 }

export interface AclRule {
  /** READ | WRITE bits; 0 = deny */
  access: number
  filter: string
  /** file:line */
  source: string
}

export interface AclRules {
  anonymous: AclRule[]
  users: Map<string, AclRule[]>
  patterns: AclRule[]
}

/** Parses an ACL file; every bad line is reported (file:line) and the whole file is refused (exit 3, as mosquitto). */
export function parseAclFile (text: string, file: string): AclRules {
  const rules: AclRules = { anonymous: [], users: new Map(), patterns: [] }
  const errors: string[] = []
  let section: AclRule[] = rules.anonymous
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const source = `${file}:${i + 1}`
    const m = /^(\S+)\s*(.*)$/.exec(line)!
    const keyword = m[1]!
    const rest = m[2]!
    if (keyword === 'user') {
      if (rest === '') { errors.push(`Error: missing username in acl_file (${source}).`); continue }
      section = rules.users.get(rest) ?? []
      rules.users.set(rest, section)
      continue
    }
    if (keyword !== 'topic' && keyword !== 'pattern') {
      errors.push(`Error: invalid line in acl_file: "${keyword}" is not user, topic or pattern (${source}).`)
      continue
    }
    // `topic [access] FILTER`: the filter is the rest of the line (mosquitto allows spaces in it)
    const a = /^(read|write|readwrite|deny)\s+(.+)$/.exec(rest)
    const access = a ? ACCESS[a[1]!]! : READ | WRITE
    const filter = a ? a[2]!.trim() : rest
    if (filter === '') { errors.push(`Error: missing topic in acl_file (${source}).`); continue }
    if (!validFilter(filter)) { errors.push(`Error: invalid topic filter "${filter}" in acl_file (${source}).`); continue }
    const rule: AclRule = { access, filter, source }
    if (keyword === 'pattern') rules.patterns.push(rule)
    else section.push(rule)
  }
  if (errors.length > 0) throw new BrokerError('CONFIG_INVALID', errors[0]!, { problems: errors })
  return rules
}

interface CompiledRule extends CompiledFilter { access: number }

/** One rule list (the client's own section, or the patterns) with its deny rules split out. */
interface RuleList { deny: CompiledRule[], grant: CompiledRule[] }

function ruleList (rules: CompiledRule[]): RuleList {
  return { deny: rules.filter(r => r.access === 0), grant: rules.filter(r => r.access !== 0) }
}

/**
 * One client's rules with %c/%u substituted and a bounded per-topic result cache. As in mosquitto 2.0.11
 * (checked against it: a `pattern deny` does not take back a user's `topic #`), the client's own section is
 * checked first, denies before grants, then the patterns, denies before grants.
 */
class ClientAcl {
  private readonly cache = new Map<string, number>()

  constructor (private readonly own: RuleList, private readonly patterns: RuleList, private readonly cacheSize: number) {}

  /** READ|WRITE bits granted on the topic, plus (bit << 2) for each access a deny rule took away. */
  accessTo (topic: string): number {
    let v = this.cache.get(topic)
    if (v !== undefined) return v
    v = this.compute(topic)
    if (this.cache.size >= this.cacheSize) this.cache.clear()
    this.cache.set(topic, v)
    return v
  }

  private compute (topic: string): number {
    const levels = topic.split('/')
    let granted = 0
    for (const list of [this.own, this.patterns]) {
      for (const r of list.deny) {
        if (filterMatches(r, topic, levels)) return granted | (((READ | WRITE) & ~granted) << 2)
      }
      for (const r of list.grant) if (filterMatches(r, topic, levels)) granted |= r.access
      if (granted === (READ | WRITE)) break
    }
    return granted
  }

  /**
   * True when the subscription can only ever receive denied topics: it falls under one of the client's own deny
   * rules, or under a pattern deny rule that none of the client's own read grants overlaps.
   */
  denies (filter: string): boolean {
    if (this.own.deny.some(r => filterCovers(r, filter))) return true
    if (!this.patterns.deny.some(r => filterCovers(r, filter))) return false
    const sub = compileFilter(filter)
    return !this.own.grant.some(r => (r.access & READ) !== 0 && filtersOverlap(r, sub))
  }
}

export interface AclOptions {
  /** Compiled clients kept (by username + client id). */
  maxClients?: number
  /** Topics cached per client. */
  topicsPerClient?: number
}

/** The compiled ACL for one rule set; replaced wholesale on reload. */
export class Acl {
  private readonly clients = new Map<string, ClientAcl>()
  private readonly maxClients: number
  private readonly topicsPerClient: number

  constructor (readonly rules: AclRules, opts: AclOptions = {}) {
    this.maxClients = opts.maxClients ?? 10_000
    this.topicsPerClient = opts.topicsPerClient ?? 1024
  }

  client (clientId: string, username: string | undefined): ClientAcl {
    const key = username === undefined ? `\u0000${clientId}` : `${username}\u0000${clientId}`
    let c = this.clients.get(key)
    if (c) return c
    c = this.compile(clientId, username)
    if (this.clients.size >= this.maxClients) this.clients.delete(this.clients.keys().next().value!)
    this.clients.set(key, c)
    return c
  }

  private compile (clientId: string, username: string | undefined): ClientAcl {
    const own = username === undefined ? this.rules.anonymous : (this.rules.users.get(username) ?? [])
    const pats: CompiledRule[] = []
    const injectable = /[+#]/.test(clientId) || (username !== undefined && /[+#]/.test(username))
    if (!injectable) {
      for (const r of this.rules.patterns) {
        if (r.filter.includes('%u') && username === undefined) continue
        const f = r.filter.replaceAll('%c', clientId).replaceAll('%u', username ?? '')
        pats.push({ ...compileFilter(f), access: r.access })
      }
    }
    return new ClientAcl(ruleList(own.map(r => ({ ...compileFilter(r.filter), access: r.access }))), ruleList(pats), this.topicsPerClient)
  }
}

export class AclFileProvider implements AuthProvider {
  readonly name: string
  // mosquitto 2.0's file ACL never refuses a subscription; this provider refuses only a filter that can match
  // nothing but denied topics, a refusal beyond mosquitto, told as the 0x80 a 3.1.1 client gets
  readonly subscriptionRefusal = 'unspecified'
  private acl: Acl

  constructor (readonly file: string, private readonly log: Logger, private readonly opts: AclOptions = {}) {
    this.name = `acl_file ${file}`
    let text: string
    try { text = readFileSync(file, 'utf8') } catch (err) { throw readError(file, err) }
    this.acl = new Acl(parseAclFile(text, file), opts)
  }

  async authorize (req: AuthorizeRequest): Promise<AuthResult> {
    return this.authorizeSync(req)
  }

  authorizeSync (req: AuthorizeRequest): AuthResult {
    const c = this.acl.client(req.clientId, req.username)
    if (req.action === 'subscribe') {
      // mosquitto 2.0's file ACL allows every subscription and filters on delivery; a filter that can only ever
      // match denied topics is refused at once instead (SUBACK 0x80)
      return c.denies(req.topic) ? 'deny' : 'allow'
    }
    return verdict(c.accessTo(req.topic), WRITE)
  }

  authorizeReceive (req: ReceiveRequest): AuthResult {
    return verdict(this.acl.client(req.clientId, req.username).accessTo(req.topic), READ)
  }

  /** SIGHUP: a broken file keeps the old rules and throws so the chain logs why; new rules apply at once. */
  async reload (): Promise<void> {
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch (err) { throw readError(this.file, err) }
    let rules: AclRules
    try { rules = parseAclFile(text, this.file) } catch (err) {
      const e = err as BrokerError
      throw new BrokerError('AUTH_FILE', e.problems.join(' '), { cause: err })
    }
    this.acl = new Acl(rules, this.opts)
    this.log.debug({ file: this.file }, 'acl_file reloaded')
  }
}

function verdict (bits: number, want: number): AuthResult {
  if ((bits & want) !== 0) return 'allow'
  return (bits & (want << 2)) !== 0 ? 'deny' : 'defer'
}

function readError (file: string, err: unknown): BrokerError {
  return new BrokerError('AUTH_FILE', `Error: unable to open acl_file "${file}": ${fileErrorReason(err)}.`, { cause: err })
}

export const aclFileFactory: AuthProviderFactory = async (auth, log) =>
  auth.aclFile ? new AclFileProvider(auth.aclFile, log) : undefined
