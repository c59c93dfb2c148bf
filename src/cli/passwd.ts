/**
 * `midge passwd`: mosquitto_passwd for Midge and mosquitto password files (`$7$` PBKDF2-SHA512 by default, as
 * mosquitto 2.0 writes, so the file works in either broker).
 *
 *   midge passwd [-c] FILE USER               prompt twice (no echo), add or update USER (-c: new file)
 *   midge passwd -b [-c] FILE USER PASSWORD   batch: the password on the command line
 *   midge passwd -D FILE USER                 delete USER
 *   midge passwd -U FILE                      hash every plain-text `user:password` line in place
 */
import { readFileSync, writeFileSync, renameSync, statSync, existsSync } from 'node:fs'
import { dirname, join, basename } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Command } from 'commander'
import { BrokerError } from '../errors.js'
import { DEFAULT_ITERATIONS, hashPassword, hashPasswordSha512, parseHash } from '../auth/password-hash.js'

export interface PasswdOptions {
  create?: boolean
  batch?: boolean
  delete?: boolean
  upgrade?: boolean
  iterations?: number
  hash?: 'sha512-pbkdf2' | 'sha512'
}

function fail (message: string): BrokerError {
  return new BrokerError('USAGE', `Error: ${message}`)
}

function makeHash (password: string, o: PasswdOptions): string {
  return o.hash === 'sha512' ? hashPasswordSha512(password) : hashPassword(password, o.iterations ?? DEFAULT_ITERATIONS)
}

function checkUsername (u: string): void {
  if (u === '') throw fail('Username must not be empty.')
  if (u.includes(':')) throw fail('Username must not contain \':\'.')
  if (/[\r\n]/.test(u)) throw fail('Username must not contain a line break.')
  if (Buffer.byteLength(u) > 65535) throw fail('Username too long.')
}

function checkPassword (p: string): void {
  if (/[\r\n]/.test(p)) throw fail('Password must not contain a line break.')
  if (Buffer.byteLength(p) > 65535) throw fail('Password too long.')
}

/** Replaces the file atomically (temp file + rename), keeping its mode; a new file is 0600. */
function writeAtomic (file: string, text: string): void {
  let mode = 0o600
  // no file yet: a new one gets 0600
  try { mode = statSync(file).mode & 0o777 } catch {}
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  writeFileSync(tmp, text, { mode, flag: 'wx' })
  renameSync(tmp, file)
}

function readLines (file: string): string[] {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw fail(`Unable to open file ${file} for reading (${code === 'ENOENT' ? 'no such file; use -c to create it' : code ?? (err as Error).message}).`)
  }
  const lines = text.split('\n').map(l => l.replace(/\r$/, ''))
  if (lines[lines.length - 1] === '') lines.pop()
  return lines
}

const userOf = (line: string): string | undefined => {
  const i = line.indexOf(':')
  return i > 0 && !line.trimStart().startsWith('#') ? line.slice(0, i) : undefined
}

/** Adds or updates a user (create: a new file holding only that user). */
export function setPassword (file: string, username: string, password: string, o: PasswdOptions = {}): void {
  checkUsername(username)
  checkPassword(password)
  const line = `${username}:${makeHash(password, o)}`
  if (o.create) { writeAtomic(file, `${line}\n`); return }
  const lines = readLines(file)
  let found = false
  const out = lines.map(l => {
    if (userOf(l) !== username) return l
    found = true
    return line
  })
  if (!found) out.push(line)
  writeAtomic(file, `${out.join('\n')}\n`)
}

/** Deletes a user; false when the user was not in the file. */
export function deleteUser (file: string, username: string): boolean {
  const lines = readLines(file)
  const out = lines.filter(l => userOf(l) !== username)
  if (out.length === lines.length) return false
  writeAtomic(file, out.length > 0 ? `${out.join('\n')}\n` : '')
  return true
}

/** Hashes every plain-text `user:password` line; returns how many were converted. */
export function upgradeFile (file: string, o: PasswdOptions = {}): number {
  const lines = readLines(file)
  let n = 0
  const out = lines.map(l => {
    const u = userOf(l)
    if (u === undefined) return l
    const rest = l.slice(u.length + 1)
    if (parseHash(rest)) return l
    n++
    return `${u}:${makeHash(rest, o)}`
  })
  writeAtomic(file, `${out.join('\n')}\n`)
  return n
}

// ---- prompting

/** Reads one line from stdin: without echo on a terminal (raw mode), plainly from a pipe. */
async function readSecret (prompt: string, input: NodeJS.ReadStream = process.stdin): Promise<string> {
  if (input.isTTY) {
    // echo off before the prompt appears, so nothing typed after it is echoed
    input.setRawMode(true)
    process.stderr.write(prompt)
    return new Promise((resolve, reject) => {
      let buf = ''
      input.resume()
      input.setEncoding('utf8')
      const done = (err?: Error): void => {
        input.setRawMode(false)
        input.pause()
        input.off('data', onData)
        process.stderr.write('\n')
        if (err) reject(err); else resolve(buf)
      }
      const onData = (chunk: string): void => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n') { done(); return }
          if (ch === '\u0003') { done(fail('Interrupted.')); return }
          if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1)
          else buf += ch
        }
      }
      input.on('data', onData)
    })
  }
  process.stderr.write(prompt)
  return pipedLine(input)
}

let pipeBuffer = ''
let pipeEnded = false
/** Lines from a piped stdin, in order, shared between the two prompts. */
async function pipedLine (input: NodeJS.ReadStream): Promise<string> {
  input.setEncoding('utf8')
  while (!pipeBuffer.includes('\n') && !pipeEnded) {
    const chunk = await new Promise<string | null>(resolve => {
      const onData = (d: string): void => { cleanup(); input.pause(); resolve(d) }
      const onEnd = (): void => { cleanup(); resolve(null) }
      const cleanup = (): void => { input.off('data', onData); input.off('end', onEnd) }
      input.on('data', onData)
      input.on('end', onEnd)
      input.resume()
    })
    if (chunk === null) pipeEnded = true
    else pipeBuffer += chunk
  }
  process.stderr.write('\n')
  const i = pipeBuffer.indexOf('\n')
  if (i < 0) {
    if (pipeBuffer === '') throw fail('No password given.')
    const l = pipeBuffer; pipeBuffer = ''; return l
  }
  const line = pipeBuffer.slice(0, i).replace(/\r$/, '')
  pipeBuffer = pipeBuffer.slice(i + 1)
  return line
}

async function promptTwice (): Promise<string> {
  const a = await readSecret('Password: ')
  const b = await readSecret('Reenter password: ')
  if (a !== b) throw fail('Passwords do not match.')
  return a
}

export function registerPasswd (program: Command): void {
  // mosquitto_passwd's -c must not be taken for the broker's -c/--config-file: options after a subcommand
  // name belong to the subcommand
  program.enablePositionalOptions()
  program.command('passwd')
    .description('manage a mosquitto-compatible password_file (like mosquitto_passwd)')
    .argument('<file>', 'password file')
    .argument('[username]', 'user to add, update or delete')
    .argument('[password]', 'password, with -b only')
    .option('-c', 'create a new file (overwrites an existing one) holding this user')
    .option('-b', 'batch mode: take the password from the command line')
    .option('-D', 'delete the user')
    .option('-U', 'upgrade: hash every plain-text "user:password" line')
    .option('-H <hash>', 'sha512-pbkdf2 ($7$, default) or sha512 ($6$, mosquitto 1.x)')
    .option('-I <iterations>', `PBKDF2 iterations (default ${DEFAULT_ITERATIONS}, as mosquitto_passwd 2.0)`)
    .action(async (file: string, username: string | undefined, password: string | undefined, f: { c?: boolean, b?: boolean, D?: boolean, U?: boolean, H?: string, I?: string }) => {
      const o: PasswdOptions = { create: f.c, batch: f.b, delete: f.D, upgrade: f.U }
      if (f.H !== undefined) {
        if (f.H !== 'sha512-pbkdf2' && f.H !== 'sha512') throw fail(`Invalid hash type "${f.H}" (sha512-pbkdf2 or sha512).`)
        o.hash = f.H
      }
      if (f.I !== undefined) {
        if (!/^\d+$/.test(f.I) || Number(f.I) < 1 || Number(f.I) > 10_000_000) throw fail(`Invalid iterations value (${f.I}).`)
        o.iterations = Number(f.I)
      }
      if ([o.create, o.delete, o.upgrade].filter(Boolean).length > 1) throw fail('-c, -D and -U cannot be combined.')
      if (o.upgrade) {
        if (username !== undefined) throw fail('-U takes only the file.')
        const n = upgradeFile(file, o)
        process.stderr.write(`${n} plain-text password(s) hashed in ${file}.\n`)
        return
      }
      if (username === undefined) throw fail('Missing username.')
      if (o.delete) {
        if (password !== undefined) throw fail('-D takes the file and a username.')
        if (!deleteUser(file, username)) throw fail(`User ${username} not found in ${file}.`)
        return
      }
      if (!o.create && !existsSync(file)) throw fail(`Unable to open file ${file} for reading (no such file; use -c to create it).`)
      if (o.batch) {
        if (password === undefined) throw fail('-b needs a password.')
      } else {
        if (password !== undefined) throw fail('a password on the command line needs -b.')
        password = await promptTwice()
      }
      setPassword(file, username, password, o)
    })
}
