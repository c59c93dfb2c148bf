/**
 * TLS-PSK (`psk_hint` on a listener, `psk_file` in its auth scope): mosquitto's psk_file is `identity:hexkey` per line,
 * the key in hex without "0x". The table is read at start-up and again on SIGHUP (a broken file keeps the old one).
 */
import { readFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'
import { BrokerError, fileErrorReason } from '../errors.js'

export type PskTable = Map<string, Buffer>

/** Parses a psk_file; a bad line is an error naming file:line (never the key). */
export function parsePskFile (text: string, file: string): PskTable {
  const table: PskTable = new Map()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    const key = colon > 0 ? line.slice(colon + 1) : ''
    if (colon <= 0 || !/^([0-9a-fA-F]{2})+$/.test(key)) {
      throw new BrokerError('AUTH_FILE', `Error: invalid line in psk_file (${file}:${i + 1}): expected identity:hexkey.`)
    }
    table.set(line.slice(0, colon), Buffer.from(key, 'hex'))
  }
  return table
}

export function readPskFile (file: string): PskTable {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) {
    throw new BrokerError('AUTH_FILE', `Error: unable to open psk_file "${file}": ${fileErrorReason(err)}.`, { cause: err })
  }
  return parsePskFile(text, file)
}

/** The PSK identity a connection authenticated with (TLS-PSK handshakes have no certificate to carry it). */
const identities = new WeakMap<TLSSocket, string>()

export function pskIdentityOf (socket: TLSSocket): string | undefined {
  return identities.get(socket)
}

/** Node's pskCallback over a table that SIGHUP may replace: unknown identities fail the handshake. */
export function pskCallback (table: () => PskTable | undefined): (socket: TLSSocket, identity: string) => Buffer | null {
  return (socket, identity) => {
    const key = table()?.get(identity)
    if (key === undefined) return null
    identities.set(socket, identity)
    return key
  }
}
