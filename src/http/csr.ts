/**
 * The CSR signing page of test.mosquitto.org, on websockets listeners that set `http_csr_signing true`:
 *   GET  /ssl/        a form (paste a CSR made with `openssl req`), with the commands to make one
 *   GET  /ssl/ca.crt  the CA certificate (clients verify the broker with it; it signs the client certificates)
 *   POST /ssl/csr     body: the PEM CSR, raw or as the form's `csr` field -> the signed certificate (PEM)
 * Off unless configured; signings are limited per remote address (`http_csr_rate_limit` per hour). Only RSA keys
 * are accepted (node-forge signs RSA only), as in test.mosquitto.org's own instructions (`openssl genrsa`).
 */
import { randomSerial } from '../util/serial.js'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type forge from 'node-forge'
import { nodeForge } from '../util/lazy-forge.js'
import type { Config, CsrSigningConfig, ListenerConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import { BrokerError, MidgeError } from '../errors.js'
import type { HttpRouter } from './router.js'

/** Largest request body accepted (a 4096-bit RSA CSR is under 2 KiB). */
const MAX_BODY = 16 * 1024
const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Smallest RSA key signed (NIST SP 800-57: 2048 bits until 2030). */
const MIN_RSA_BITS = 2048
/** A certificate is valid from a little before now, so that a client whose clock is behind accepts it. */
const CLOCK_SKEW_MS = 5 * 60_000
/** Subject attributes copied from the CSR; anything else is dropped. */
const SUBJECT_FIELDS = new Set(['CN', 'O', 'OU', 'C', 'ST', 'L', 'E'])
/** Addresses remembered by the rate limiter before the oldest are forgotten. */
const MAX_TRACKED = 10_000

/** Why the CSR page refused a request; the answer is plain text for people, with this HTTP status. */
export const CSR_ERR = {
  INVALID: { code: 'MIDGE_ERR_CSR_INVALID', status: 400 },
  TOO_LARGE: { code: 'MIDGE_ERR_CSR_TOO_LARGE', status: 413 }
} as const

export class CsrError extends MidgeError {
  readonly status: number
  constructor (kind: keyof typeof CSR_ERR, message: string) {
    super(CSR_ERR[kind].code, message)
    this.name = 'CsrError'
    this.status = CSR_ERR[kind].status
  }
}

/** A CA that signs client certificates for one listener's page. */
export class CsrSigner {
  readonly caPem: string
  private readonly caCert: forge.pki.Certificate
  private readonly caKey: forge.pki.rsa.PrivateKey
  private readonly hits = new Map<string, number[]>()

  constructor (readonly cfg: CsrSigningConfig, caPem: string, keyPem: string) {
    this.caPem = caPem
    this.caCert = nodeForge().pki.certificateFromPem(caPem)
    this.caKey = nodeForge().pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey
    const pub = this.caCert.publicKey as forge.pki.rsa.PublicKey
    if (pub.n === undefined || pub.n.compareTo(this.caKey.n) !== 0) throw new Error('http_csr_keyfile is not the key of http_csr_cafile')
  }

  /** Reads and checks the CA files: a missing or unusable file is one readable line at start-up. */
  static load (cfg: CsrSigningConfig): CsrSigner {
    const read = (path: string, what: string): string => {
      try {
        return readFileSync(path, 'utf8')
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        const reason = code === 'ENOENT' ? 'no such file (make a CA with "midge certs ca --dir DIR")' : code ?? (err as Error).message
        throw new BrokerError('TLS', `Error: unable to load ${what} "${path}" (${cfg.source}): ${reason}.`, { cause: err })
      }
    }
    const ca = read(cfg.cafile, 'http_csr_cafile')
    const key = read(cfg.keyfile, 'http_csr_keyfile')
    try {
      return new CsrSigner(cfg, ca, key)
    } catch (err) {
      throw new BrokerError('TLS', `Error: cannot use the CSR signing CA (${cfg.source}): ${(err as Error).message} (an RSA CA made by "midge certs ca" works).`, { cause: err })
    }
  }

  /** True when `address` may have another signing now (and counts it). */
  admit (address: string, now = Date.now()): { ok: true } | { ok: false, retryAfterSeconds: number } {
    const recent = (this.hits.get(address) ?? []).filter(t => now - t < HOUR)
    if (recent.length >= this.cfg.ratePerHour) {
      this.hits.set(address, recent)
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((recent[0]! + HOUR - now) / 1000)) }
    }
    recent.push(now)
    this.hits.delete(address)
    this.hits.set(address, recent)
    if (this.hits.size > MAX_TRACKED) this.hits.delete(this.hits.keys().next().value!)
    return { ok: true }
  }

  /** Signs a PEM CSR: a client certificate (extKeyUsage clientAuth) valid for `days`, subject copied from the CSR. */
  sign (csrPem: string, now = new Date()): { pem: string, commonName: string, serial: string } {
    let csr: forge.pki.CertificateSigningRequest
    try {
      csr = nodeForge().pki.certificationRequestFromPem(csrPem)
    } catch (err) {
      const msg = (err as Error).message
      if (/OID is not RSA/i.test(msg)) throw new CsrError('INVALID', 'only RSA keys are supported: make the key with "openssl genrsa -out client.key 2048"')
      throw new CsrError('INVALID', 'not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----)')
    }
    if (!csr.verify()) throw new CsrError('INVALID', 'the CSR\'s signature does not verify')
    const pub = csr.publicKey as forge.pki.rsa.PublicKey | null
    if (!pub || pub.n.bitLength() < MIN_RSA_BITS) throw new CsrError('INVALID', `the key is too short: use an RSA key of ${MIN_RSA_BITS} bits or more`)
    const attrs = csr.subject.attributes.filter(a => a.shortName !== undefined && SUBJECT_FIELDS.has(a.shortName))
    const cn = attrs.find(a => a.shortName === 'CN')?.value
    if (typeof cn !== 'string' || cn.length === 0 || cn.length > 64) throw new CsrError('INVALID', 'the CSR needs a common name (CN) of 1 to 64 characters: openssl req -subj "/CN=yourname"')
    const cert = nodeForge().pki.createCertificate()
    cert.publicKey = pub
    cert.serialNumber = randomSerial()
    cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_MS)
    cert.validity.notAfter = new Date(now.getTime() + this.cfg.days * DAY)
    cert.setSubject(attrs.map(a => ({ shortName: a.shortName, value: a.value as string })))
    cert.setIssuer(this.caCert.subject.attributes)
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.caCert.generateSubjectKeyIdentifier().getBytes() }
    ])
    cert.sign(this.caKey, nodeForge().md.sha256.create())
    return { pem: nodeForge().pki.certificateToPem(cert), commonName: cn, serial: cert.serialNumber }
  }
}

function readBody (req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > MAX_BODY) { reject(new CsrError('TOO_LARGE', `request body larger than ${MAX_BODY} bytes`)); return }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) { req.destroy(); reject(new CsrError('TOO_LARGE', `request body larger than ${MAX_BODY} bytes`)); return }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

/** The PEM CSR from a raw body (curl --data-binary @client.csr) or a form field `csr` (the page, curl -d/--data-urlencode). */
export function csrFromBody (body: string, contentType: string | undefined): string {
  const trimmed = body.trim()
  if (trimmed.startsWith('-----BEGIN')) return trimmed
  if ((contentType ?? '').startsWith('application/x-www-form-urlencoded')) {
    const v = new URLSearchParams(body).get('csr')
    if (v) return v.trim()
  }
  throw new CsrError('INVALID', 'no CSR in the request: send the PEM text as the body, or as the form field "csr"')
}

function page (l: ListenerConfig, cfg: CsrSigningConfig): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Midge: client certificate</title>
<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}textarea{width:100%;height:14em;font-family:monospace}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}</style>
</head><body>
<h1>Client certificate</h1>
<p>Download the broker's CA certificate: <a href="ca.crt">ca.crt</a>. Clients use it to check the broker's
TLS certificate (<code>--cafile ca.crt</code>).</p>
<p>To get a client certificate (for the port that requires one), make a key and a certificate signing request:</p>
<pre>openssl genrsa -out client.key 2048
openssl req -new -key client.key -out client.csr -subj "/CN=yourname"</pre>
<p>then paste <code>client.csr</code> here. You get <code>client.crt</code>, valid for ${cfg.days} days
(at most ${cfg.ratePerHour} per hour from one address). Your key never leaves your machine.</p>
<form method="post" action="csr"><textarea name="csr" placeholder="-----BEGIN CERTIFICATE REQUEST-----" required></textarea>
<p><button type="submit">Sign</button></p></form>
<p>Or from a shell: <code>curl --data-binary @client.csr -o client.crt ${l.transport === 'wss' ? 'https' : 'http'}://HOST:${l.port}/ssl/csr</code></p>
</body></html>
`
}

/** Loads the CA of every listener with `http_csr_signing true` and registers the page on those listeners. */
export function registerCsrRoutes (router: HttpRouter, config: Config, log: Logger): void {
  const signers = new Map<string, CsrSigner>()
  for (const l of config.listeners) {
    if (l.http?.csr?.enabled) signers.set(l.id, CsrSigner.load(l.http.csr))
  }
  if (signers.size === 0) return
  const when = (l: ListenerConfig): boolean => signers.has(l.id)
  const text = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(`${body}\n`)
  }

  const showPage = (req: IncomingMessage, res: ServerResponse, l: ListenerConfig): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { text(res, 405, 'Method not allowed', { allow: 'GET' }); return }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'" })
    res.end(req.method === 'HEAD' ? undefined : page(l, signers.get(l.id)!.cfg))
  }
  router.add('/ssl', (_req, res) => { res.writeHead(301, { location: '/ssl/' }).end() }, when)
  router.add('/ssl/', showPage, when)
  router.add('/ssl/ca.crt', (req, res, l) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { text(res, 405, 'Method not allowed', { allow: 'GET' }); return }
    res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-disposition': 'attachment; filename="ca.crt"' })
    res.end(req.method === 'HEAD' ? undefined : signers.get(l.id)!.caPem)
  }, when)
  router.add('/ssl/csr', async (req, res, l) => {
    if (req.method !== 'POST') { text(res, 405, 'Method not allowed: POST the CSR', { allow: 'POST' }); return }
    const signer = signers.get(l.id)!
    const address = req.socket.remoteAddress ?? '?'
    const admitted = signer.admit(address)
    if (!admitted.ok) {
      log.info({ listener: l.id, remoteAddress: address }, 'CSR refused: rate limit')
      text(res, 429, `Too many certificates from ${address}: at most ${signer.cfg.ratePerHour} per hour. Try again in ${admitted.retryAfterSeconds} s.`, { 'retry-after': String(admitted.retryAfterSeconds) })
      return
    }
    try {
      const csr = csrFromBody(await readBody(req), req.headers['content-type'])
      const signed = signer.sign(csr)
      log.info({ listener: l.id, remoteAddress: address, commonName: signed.commonName, serial: signed.serial }, 'client certificate signed')
      res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-disposition': 'attachment; filename="client.crt"', 'cache-control': 'no-store' })
      res.end(signed.pem)
    } catch (err) {
      if (!(err instanceof CsrError)) throw err
      log.info({ listener: l.id, remoteAddress: address, code: err.code, reason: err.message }, 'CSR refused')
      text(res, err.status, `Error: ${err.message}.`, err.status === 413 ? { connection: 'close' } : {})
    }
  }, when)
}
