import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import tls from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { BrokerError } from '../errors.js'
import type { ListenerConfig, TlsConfig } from '../config/schema.js'
import type { ConnectionContext } from './types.js'

const TLS_VERSIONS: Record<string, tls.SecureVersion> = { 'tlsv1.1': 'TLSv1.1', 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' }

function readPem (path: string, what: string, cfg: ListenerConfig): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message
    throw new BrokerError('TLS', `Error: unable to load ${what} "${path}" for ${cfg.transport} listener on port ${cfg.port} (${cfg.source}): ${reason}.`, { cause: err })
  }
}

/** Reads and checks the listener's certificates; start-up fails with one readable line on any problem. */
export function secureContextOptions (cfg: ListenerConfig): tls.TlsOptions {
  const t = cfg.tls as TlsConfig
  const cert = readPem(t.certfile, 'certfile', cfg)
  const key = readPem(t.keyfile, 'keyfile', cfg)
  const ca: Buffer[] = []
  if (t.cafile) ca.push(readPem(t.cafile, 'cafile', cfg))
  if (t.capath) {
    let names: string[]
    try { names = readdirSync(t.capath).filter(n => /\.(pem|crt)$/.test(n)) } catch (err) {
      throw new BrokerError('TLS', `Error: unable to read capath "${t.capath}" (${cfg.source}).`, { cause: err })
    }
    for (const n of names) ca.push(readPem(join(t.capath, n), 'capath certificate', cfg))
  }
  const opts: tls.TlsOptions = {
    cert,
    key,
    ca: ca.length > 0 ? ca : undefined,
    requestCert: t.requireCertificate || t.useIdentityAsUsername || t.useSubjectAsUsername,
    rejectUnauthorized: t.requireCertificate,
    minVersion: t.tlsVersion ? TLS_VERSIONS[t.tlsVersion] : 'TLSv1.1',
    ciphers: t.ciphers
  }
  if (opts.minVersion === 'TLSv1.1') opts.ciphers ??= 'DEFAULT:@SECLEVEL=0'
  try {
    tls.createSecureContext(opts)
  } catch (err) {
    throw new BrokerError('TLS', `Error: invalid TLS configuration for ${cfg.transport} listener on port ${cfg.port} (${cfg.source}): ${(err as Error).message}.`, { cause: err })
  }
  return opts
}

export function tlsPeerOf (socket: TLSSocket): ConnectionContext['tlsPeer'] {
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return { authorized: false }
  const subject = cert.subject ? Object.entries(cert.subject).map(([k, v]) => `${k}=${String(v)}`).join(',') : undefined
  const cn = cert.subject?.CN
  return {
    authorized: socket.authorized,
    subject,
    commonName: Array.isArray(cn) ? cn[0] : cn,
    authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined
  }
}
