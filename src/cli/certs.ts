/**
 * `midge certs`: a private CA, server certificates for given host names and client certificates, so TLS and
 * client-certificate listeners can be turned on in minutes. Keys come from node:crypto (RSA 2048); the X.509
 * structures are built and signed with node-forge. Keys are written with mode 0600 and never overwritten.
 *
 *   midge certs ca     [--dir DIR] [--cn NAME] [--days N]
 *   midge certs server --host NAME [--host NAME ...] [--dir DIR] [--name server] [--days N]
 *   midge certs client CN [--dir DIR] [--days N]
 *   midge certs sign CSR [--dir DIR] [--out FILE] [--days N]
 */
import { randomSerial } from '../util/serial.js'
import { createPublicKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import type forge from 'node-forge'
import { nodeForge } from '../util/lazy-forge.js'
import type { Command } from 'commander'
import { BrokerError } from '../errors.js'

const DAY = 86_400_000

export interface Pem { cert: string, key: string }

export interface CertOptions {
  /** Validity in days from now (default: CA 3650, others 825). */
  days?: number
  /** Explicit validity window (tests: an expired certificate). Overrides `days`. */
  notBefore?: Date
  notAfter?: Date
  /** An existing private key (PEM) to certify instead of generating a new one (tests; re-issuing). */
  key?: string
}

function newKey (existing?: string): { pem: string, forgePub: forge.pki.rsa.PublicKey } {
  if (existing !== undefined) {
    const spki = createPublicKey(existing).export({ type: 'spki', format: 'pem' }) as string
    return { pem: existing, forgePub: nodeForge().pki.publicKeyFromPem(spki) as forge.pki.rsa.PublicKey }
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
  })
  return {
    pem: privateKey,
    forgePub: nodeForge().pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey
  }
}

/**
 * sha256WithRSAEncryption, as forge's cert.sign() does, but the RSA signature comes from node:crypto (native).
 * Measured here: forge's JavaScript RSA signature alone took ~30 ms per certificate, a whole certificate with the
 * native signature 4-5 ms.
 */
function signCert (cert: forge.pki.Certificate, keyPem: string): void {
  const c = cert as forge.pki.Certificate & { signatureOid: string, siginfo: { algorithmOid: string }, tbsCertificate: forge.asn1.Asn1, signature: string }
  c.signatureOid = c.siginfo.algorithmOid = nodeForge().pki.oids.sha256WithRSAEncryption!
  c.tbsCertificate = (nodeForge().pki as unknown as { getTBSCertificate: (c: forge.pki.Certificate) => forge.asn1.Asn1 }).getTBSCertificate(cert)
  const tbs = Buffer.from(nodeForge().asn1.toDer(c.tbsCertificate).getBytes(), 'binary')
  c.signature = cryptoSign('sha256', tbs, keyPem).toString('binary')
}

function validity (cert: forge.pki.Certificate, o: CertOptions, defaultDays: number): void {
  const now = Date.now()
  cert.validity.notBefore = o.notBefore ?? new Date(now - 60_000) // a minute of clock skew
  cert.validity.notAfter = o.notAfter ?? new Date(now + (o.days ?? defaultDays) * DAY)
}

export function createCa (cn = 'Midge CA', o: CertOptions = {}): Pem {
  const k = newKey(o.key)
  const cert = nodeForge().pki.createCertificate()
  cert.publicKey = k.forgePub
  cert.serialNumber = randomSerial()
  validity(cert, o, 3650)
  const attrs = [{ name: 'commonName', value: cn }, { name: 'organizationName', value: 'Midge' }]
  cert.setSubject(attrs)
  cert.setIssuer(attrs)
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' }
  ])
  signCert(cert, k.pem)
  return { cert: nodeForge().pki.certificateToPem(cert), key: k.pem }
}

function issue (ca: Pem, cn: string, exts: unknown[], o: CertOptions, publicKey?: forge.pki.PublicKey, subject?: forge.pki.CertificateField[]): Pem {
  const caCert = nodeForge().pki.certificateFromPem(ca.cert)
  const k = publicKey ? undefined : newKey(o.key)
  const cert = nodeForge().pki.createCertificate()
  cert.publicKey = publicKey ?? k!.forgePub
  cert.serialNumber = randomSerial()
  validity(cert, o, 825)
  cert.setSubject(subject ?? [{ name: 'commonName', value: cn }])
  cert.setIssuer(caCert.subject.attributes)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ...exts
  ])
  signCert(cert, ca.key)
  return { cert: nodeForge().pki.certificateToPem(cert), key: k?.pem ?? '' }
}

/**
 * Signs a client's certificate signing request (PEM) as a client certificate: the CSR's subject is kept (its CN is
 * the username under use_identity_as_username), its signature must verify, and the key never leaves the client (as
 * test.mosquitto.org's CSR form for port 8884). Only RSA CSRs (node-forge).
 */
export function signClientCsr (ca: Pem, csrPem: string, o: CertOptions = {}): string {
  let csr: forge.pki.CertificateSigningRequest
  try { csr = nodeForge().pki.certificationRequestFromPem(csrPem) } catch (err) {
    throw new Error(`not a PEM certificate signing request with an RSA key (${(err as Error).message})`)
  }
  if (!csr.verify()) throw new Error('the CSR signature does not verify')
  const cn = csr.subject.getField('CN') as { value: string } | null
  if (!cn?.value) throw new Error('the CSR has no common name (CN)')
  return issue(ca, cn.value, [
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true }
  ], o, csr.publicKey!, csr.subject.attributes).cert
}

/** A server certificate for these host names and IP addresses (subjectAltName); CN = the first. */
export function createServerCert (ca: Pem, hosts: string[], o: CertOptions = {}): Pem {
  if (hosts.length === 0) throw new Error('a server certificate needs at least one host name')
  const altNames = hosts.map(h => isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })
  return issue(ca, hosts[0]!, [
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames }
  ], o)
}

/** A client certificate; its CN is the username under use_identity_as_username. */
export function createClientCert (ca: Pem, cn: string, o: CertOptions = {}): Pem {
  return issue(ca, cn, [
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true }
  ], o)
}

// ---- files

function usage (message: string): BrokerError {
  return new BrokerError('USAGE', `Error: ${message}`)
}

/** Writes `<base>.crt` (0644) and `<base>.key` (0600); refuses to overwrite either. */
export function writePem (dir: string, base: string, pem: Pem): { cert: string, key: string } {
  mkdirSync(dir, { recursive: true })
  const cert = join(dir, `${base}.crt`)
  const key = join(dir, `${base}.key`)
  for (const f of [cert, key]) if (existsSync(f)) throw usage(`${f} exists; remove it first (Midge never overwrites keys).`)
  writeFileSync(key, pem.key, { mode: 0o600, flag: 'wx' })
  writeFileSync(cert, pem.cert, { mode: 0o644, flag: 'wx' })
  return { cert, key }
}

function readCa (dir: string): Pem {
  try {
    return { cert: readFileSync(join(dir, 'ca.crt'), 'utf8'), key: readFileSync(join(dir, 'ca.key'), 'utf8') }
  } catch {
    throw usage(`no CA in ${dir} (ca.crt and ca.key); create one with "midge certs ca --dir ${dir}".`)
  }
}

function days (v: string | undefined): CertOptions {
  if (v === undefined) return {}
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 36500) throw usage(`invalid --days value (${v}).`)
  return { days: Number(v) }
}

function expiredWindow (): CertOptions {
  const now = Date.now()
  return { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) }
}

const say = (line: string): void => { process.stdout.write(`${line}\n`) }

export function registerCerts (program: Command): void {
  const certs = program.command('certs')
    .description('create a private CA, server and client certificates for TLS listeners')
  certs.command('ca')
    .description('create ca.crt and ca.key (keep ca.key secret; give ca.crt to clients as --cafile)')
    .option('--dir <dir>', 'output directory', '.')
    .option('--cn <name>', 'CA common name', 'Midge CA')
    .option('--days <n>', 'validity in days (default 3650)')
    .action((o: { dir: string, cn: string, days?: string }) => {
      const f = writePem(o.dir, 'ca', createCa(o.cn, days(o.days)))
      say(`wrote ${f.cert} and ${f.key}`)
    })
  certs.command('server')
    .description('create a server certificate signed by the CA in --dir, for these host names / IP addresses')
    .requiredOption('--host <name>', 'host name or IP address clients connect to (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--dir <dir>', 'directory holding ca.crt and ca.key, and where the files go', '.')
    .option('--name <base>', 'file base name', 'server')
    .option('--days <n>', 'validity in days (default 825)')
    .option('--expired', 'make a certificate that expired yesterday (for allow_expired_certificate test listeners)')
    .action((o: { host: string[], dir: string, name: string, days?: string, expired?: boolean }) => {
      const opts = o.expired ? expiredWindow() : days(o.days)
      const f = writePem(o.dir, o.name, createServerCert(readCa(o.dir), o.host, opts))
      say(`wrote ${f.cert} and ${f.key} for ${o.host.join(', ')}`)
      say(`listener 8883\ncafile ${join(o.dir, 'ca.crt')}\ncertfile ${f.cert}\nkeyfile ${f.key}`)
    })
  certs.command('client')
    .description('create a client certificate with this common name (the username under use_identity_as_username)')
    .argument('<cn>', 'common name')
    .option('--dir <dir>', 'directory holding ca.crt and ca.key, and where the files go', '.')
    .option('--name <base>', 'file base name (default: the common name)')
    .option('--days <n>', 'validity in days (default 825)')
    .action((cn: string, o: { dir: string, name?: string, days?: string }) => {
      const base = o.name ?? cn.replace(/[^A-Za-z0-9._-]/g, '_')
      const f = writePem(o.dir, base, createClientCert(readCa(o.dir), cn, days(o.days)))
      say(`wrote ${f.cert} and ${f.key}`)
    })
  certs.command('sign')
    .description('sign a client certificate signing request (the private key stays with the client)')
    .argument('<csr>', 'CSR file (PEM), e.g. from: openssl req -new -newkey rsa:2048 -nodes -keyout dev.key -subj /CN=dev -out dev.csr')
    .option('--dir <dir>', 'directory holding ca.crt and ca.key', '.')
    .option('--out <file>', 'certificate file to write (default: the CSR name with .crt)')
    .option('--days <n>', 'validity in days (default 825)')
    .action((csrFile: string, o: { dir: string, out?: string, days?: string }) => {
      let csr: string
      try { csr = readFileSync(csrFile, 'utf8') } catch { throw usage(`cannot read ${csrFile}.`) }
      let cert: string
      try { cert = signClientCsr(readCa(o.dir), csr, days(o.days)) } catch (err) {
        if (err instanceof BrokerError) throw err
        throw usage(`${csrFile}: ${(err as Error).message}.`)
      }
      const out = o.out ?? `${csrFile.replace(/\.(csr|pem|req)$/, '')}.crt`
      if (existsSync(out)) throw usage(`${out} exists; remove it first.`)
      writeFileSync(out, cert, { mode: 0o644, flag: 'wx' })
      say(`wrote ${out}`)
    })
}
