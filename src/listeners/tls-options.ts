import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import tls from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { BrokerError, fileErrorReason } from '../errors.js'
import type { ListenerConfig, TlsConfig } from '../config/schema.js'
import type { ConnectionContext } from './types.js'
import type { Logger } from '../logging/logger.js'
import { pskIdentityOf } from './psk.js'

const TLS_VERSIONS: Record<string, tls.SecureVersion> = { 'tlsv1.1': 'TLSv1.1', 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' }

function readPem (path: string, what: string, cfg: ListenerConfig): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new BrokerError('TLS', `Error: unable to load ${what} "${path}" for ${cfg.transport} listener on port ${cfg.port} (${cfg.source}): ${fileErrorReason(err)}.`, { cause: err })
  }
}

function tlsError (cfg: ListenerConfig, what: string, cause?: unknown): BrokerError {
  return new BrokerError('TLS', `Error: ${what} for ${cfg.transport} listener on port ${cfg.port} (${cfg.source}).`, { cause })
}

/**
 * The checks OpenSSL would otherwise leave to the first handshake (or never make): the certfile parses, the
 * keyfile parses (unencrypted), the key belongs to the certificate, and the certificate is valid now.
 * An expired certificate is an error unless `allow_expired_certificate true`, which makes it a warning.
 */
function checkCertAndKey (cfg: ListenerConfig, certPem: Buffer, keyPem: Buffer, log?: Logger): void {
  const t = cfg.tls as TlsConfig
  let cert: X509Certificate
  try { cert = new X509Certificate(certPem) } catch (err) {
    throw tlsError(cfg, `certfile "${t.certfile}" is not a PEM certificate (${(err as Error).message})`, err)
  }
  let key: KeyObject
  try { key = createPrivateKey(keyPem) } catch (err) {
    const msg = (err as Error).message
    const encrypted = keyPem.includes('ENCRYPTED') || /passphrase|encrypted/i.test(msg)
    const why = encrypted ? 'it is encrypted; Midge needs an unencrypted key (protect it with chmod 600)' : msg
    throw tlsError(cfg, `keyfile "${t.keyfile}" is not a usable private key: ${why}`, err)
  }
  if (!cert.checkPrivateKey(key)) {
    throw tlsError(cfg, `keyfile "${t.keyfile}" does not match certfile "${t.certfile}" (key values mismatch)`)
  }
  const now = Date.now()
  const from = Date.parse(cert.validFrom)
  const to = Date.parse(cert.validTo)
  const problem = now > to ? `certfile "${t.certfile}" expired on ${new Date(to).toISOString()}` : now < from ? `certfile "${t.certfile}" is not valid before ${new Date(from).toISOString()}` : undefined
  if (problem) {
    if (!t.allowExpiredCertificate) throw tlsError(cfg, `${problem} (renew it, or set allow_expired_certificate true on a test listener)`)
    log?.warn({ listener: cfg.id }, `Warning: ${problem}; serving it anyway (allow_expired_certificate true).`)
  }
}

/** Node's default suites with the TLS 1.3 ones taken out (what `ciphers_tls1.3` alone leaves for TLS 1.2). */
function tls12Defaults (): string {
  return tls.DEFAULT_CIPHERS.split(':').filter(c => !c.startsWith('TLS_')).join(':')
}

/**
 * The cipher string for Node, which takes TLS 1.3 suites (`TLS_*`) in the same list: `ciphers` (or Node's
 * defaults), `ciphers_tls1.3` appended, PSK suites added on a PSK listener (OpenSSL never offers them by default).
 */
function cipherList (t: TlsConfig): string | undefined {
  let list = t.ciphers
  if (t.ciphersTls13) list = `${list ?? tls12Defaults()}:${t.ciphersTls13}`
  if (t.pskHint !== undefined && (list === undefined || !/PSK/.test(list))) list = `${list ?? tls.DEFAULT_CIPHERS}:PSK`
  if (t.tlsVersion === undefined || t.tlsVersion === 'tlsv1.1') list ??= 'DEFAULT:@SECLEVEL=0'
  return list
}

/** Reads and checks the listener's certificates; start-up fails with one readable line on any problem. */
export function secureContextOptions (cfg: ListenerConfig, log?: Logger): tls.TlsOptions {
  const t = cfg.tls as TlsConfig
  // a PSK-only listener (psk_hint without certfile) has no certificate, as in mosquitto
  const withCert = t.certfile !== '' || t.keyfile !== ''
  const cert = withCert ? readPem(t.certfile, 'certfile', cfg) : undefined
  const key = withCert ? readPem(t.keyfile, 'keyfile', cfg) : undefined
  if (cert && key) checkCertAndKey(cfg, cert, key, log)
  const ca: Buffer[] = []
  if (t.cafile) ca.push(readPem(t.cafile, 'cafile', cfg))
  if (t.capath) {
    let names: string[]
    try { names = readdirSync(t.capath).filter(n => /\.(pem|crt)$/.test(n) || /^[0-9a-f]{8}\.\d+$/.test(n)) } catch (err) {
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
    ciphers: cipherList(t)
  }
  // read again on every SIGHUP, with the certificates: a revoked client is refused from its next handshake on
  if (t.crlfile) opts.crl = readPem(t.crlfile, 'crlfile', cfg)
  if (t.dhparamfile) opts.dhparam = readPem(t.dhparamfile, 'dhparamfile', cfg)
  if (t.pskHint !== undefined) opts.pskIdentityHint = t.pskHint
  try {
    tls.createSecureContext(opts)
  } catch (err) {
    throw new BrokerError('TLS', `Error: invalid TLS configuration for ${cfg.transport} listener on port ${cfg.port} (${cfg.source}): ${(err as Error).message}.`, { cause: err })
  }
  return opts
}

/** The subject as mosquitto's use_subject_as_username gives it: RFC 2253 order, most specific first (`CN=dev,O=Org,C=GB`). */
function rfc2253 (raw: Buffer): string | undefined {
  try {
    const lines = new X509Certificate(raw).subject.split('\n').filter(l => l !== '')
    return lines.reverse().map(l => {
      const i = l.indexOf('=')
      return `${l.slice(0, i)}=${l.slice(i + 1).replace(/[,+"\\<>;]/g, c => `\\${c}`)}`
    }).join(',')
  } catch {
    return undefined
  }
}

export function tlsPeerOf (socket: TLSSocket): ConnectionContext['tlsPeer'] {
  const psk = pskIdentityOf(socket)
  if (psk !== undefined) return { authorized: true, pskIdentity: psk }
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return { authorized: false }
  const subject = cert.raw ? rfc2253(cert.raw) : undefined
  const cn = cert.subject?.CN
  return {
    authorized: socket.authorized,
    subject,
    commonName: Array.isArray(cn) ? cn[0] : cn,
    authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined
  }
}
