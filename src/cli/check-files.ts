/**
 * `midge check`: opens every file the config names, with the code start-up uses, so that an OK from check means the
 * broker starts (ports aside): password and ACL files, auth plug-ins (loaded, their factory run, then closed), PSK
 * files, certificates, keys, CA files and paths, CRLs, DH parameters, the CSR page's CA, the admin credentials, the
 * Redis CA, and the interfaces of bind_interface. Each problem is the line start-up would print.
 */
import { readFileSync, statSync } from 'node:fs'
import type { Config, AuthConfig } from '../config/schema.js'
import { BrokerError } from '../errors.js'
import { silentLogger, type Logger } from '../logging/logger.js'
import { parsePasswordFile } from '../auth/password-file.js'
import { AclFileProvider } from '../auth/acl-file.js'
import { loadAuthPlugin } from '../auth/plugin.js'
import { readPskFile } from '../listeners/psk.js'
import { secureContextOptions } from '../listeners/tls-options.js'
import { interfaceAddress } from '../listeners/bind.js'
import { CsrSigner } from '../http/csr.js'
import { checkAdminPasswordFile } from '../admin/auth.js'
import { fileErrorReason } from '../errors.js'

export interface FileReport {
  /** What would stop start-up, each one line, with the exit code start-up would use (the highest wins). */
  errors: Array<{ line: string, exitCode: number }>
  /** What start-up would log as a warning or error without stopping. */
  warnings: string[]
}

/** A logger that keeps warn/error lines (the expired-certificate warning, say) for the report. */
function collectingLogger (into: string[]): Logger {
  const log = silentLogger()
  const keep = (obj: unknown, msg?: string): void => { into.push(typeof obj === 'string' ? obj : msg ?? '') }
  const l = Object.create(log) as Logger
  ;(l as unknown as Record<string, unknown>).warn = keep
  ;(l as unknown as Record<string, unknown>).error = keep
  ;(l as unknown as Record<string, unknown>).child = () => l
  return l
}

export async function checkFiles (cfg: Config): Promise<FileReport> {
  const report: FileReport = { errors: [], warnings: [] }
  const log = collectingLogger(report.warnings)
  const attempt = async (step: () => unknown): Promise<void> => {
    try {
      await step()
    } catch (err) {
      const exitCode = err instanceof BrokerError ? err.exitCode : 1
      const lines = err instanceof BrokerError ? err.problems : [`Error: ${(err as Error).message}`]
      for (const line of lines) report.errors.push({ line, exitCode })
    }
  }
  // the auth scopes start-up builds: the global one, and each listener's with per_listener_settings
  const scopes: AuthConfig[] = [cfg.auth, ...(cfg.perListenerSettings ? cfg.listeners.map(l => l.auth) : [])]
  const seen = new Set<string>()
  const once = (key: string): boolean => { if (seen.has(key)) return false; seen.add(key); return true }
  for (const a of scopes) {
    if (a.passwordFile && once(`pw:${a.passwordFile}`)) {
      const file = a.passwordFile
      await attempt(() => {
        let text: string
        try { text = readFileSync(file, 'utf8') } catch (err) {
          throw new BrokerError('AUTH_FILE', `Error: unable to open password_file "${file}": ${fileErrorReason(err)}.`, { cause: err })
        }
        for (const p of parsePasswordFile(text, file).problems) report.warnings.push(`Error: ${p}`)
      })
    }
    if (a.aclFile && once(`acl:${a.aclFile}`)) { const file = a.aclFile; await attempt(() => new AclFileProvider(file, log)) }
    if (a.pskFile && once(`psk:${a.pskFile}`)) { const file = a.pskFile; await attempt(() => readPskFile(file)) }
    for (const p of a.plugins) {
      if (!once(`plugin:${p.path}:${JSON.stringify(p.options)}`)) continue
      await attempt(async () => { const provider = await loadAuthPlugin(p, log); await provider.close?.() })
    }
  }
  for (const l of cfg.listeners) {
    if (l.tls) await attempt(() => secureContextOptions(l, log))
    if (l.bindInterface) await attempt(() => interfaceAddress(l))
    if (l.http?.csr) { const c = l.http.csr; await attempt(() => CsrSigner.load(c)) }
    if (l.httpDir !== undefined) {
      let dir = false
      try { dir = statSync(l.httpDir).isDirectory() } catch {}
      if (!dir) report.warnings.push(`Warning: http_dir "${l.httpDir}" of listener ${l.id} is not a directory: every HTTP request there will get 404.`)
    }
  }
  if (cfg.admin.passwordFile && cfg.listeners.some(l => l.http?.admin === true)) { const file = cfg.admin.passwordFile; await attempt(() => checkAdminPasswordFile(file)) }
  if (cfg.cluster?.redisCafile) {
    const file = cfg.cluster.redisCafile
    await attempt(() => {
      try { readFileSync(file) } catch (err) {
        throw new BrokerError('REDIS', `Error: cannot read cluster_redis_cafile ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { cause: err })
      }
    })
  }
  return report
}
