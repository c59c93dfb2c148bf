/**
 * Midge's errors are one family: every error it raises on purpose is a MidgeError with a stable code
 * (fastify `FST_ERR_*` / undici `UND_ERR_*` style), so callers and embedders branch on `err.code`, never on the
 * message. Three tables hold the codes: ERR below (start-up, with the exit code), ADMIN_ERR (admin API, with the
 * HTTP status) and CSR_ERR (the certificate-request page); docs/errors.md lists all of them, and a test keeps it
 * in sync.
 */
export class MidgeError extends Error {
  constructor (readonly code: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'MidgeError'
  }
}

export function isMidgeError (err: unknown): err is MidgeError {
  return err instanceof MidgeError
}

/**
 * Start-up errors. The exit code is what `midge` exits with when the error stops start-up: 3 for configuration
 * errors and 1 for runtime start-up failures, the same as mosquitto (2 for a command-line usage error).
 */
export const ERR = {
  CONFIG_INVALID: { code: 'MIDGE_ERR_CONFIG_INVALID', exit: 3 },
  CONFIG_READ: { code: 'MIDGE_ERR_CONFIG_READ', exit: 3 },
  LISTEN: { code: 'MIDGE_ERR_LISTEN', exit: 1 },
  TLS: { code: 'MIDGE_ERR_TLS', exit: 1 },
  STORE_LOCKED: { code: 'MIDGE_ERR_STORE_LOCKED', exit: 1 },
  STORE_OPEN: { code: 'MIDGE_ERR_STORE_OPEN', exit: 1 },
  STORE_CORRUPT: { code: 'MIDGE_ERR_STORE_CORRUPT', exit: 1 },
  AUTH_FILE: { code: 'MIDGE_ERR_AUTH_FILE', exit: 1 },
  PLUGIN: { code: 'MIDGE_ERR_PLUGIN', exit: 1 },
  REDIS: { code: 'MIDGE_ERR_REDIS', exit: 1 },
  PID_FILE: { code: 'MIDGE_ERR_PID_FILE', exit: 1 },
  AEDES_MISMATCH: { code: 'MIDGE_ERR_AEDES_MISMATCH', exit: 1 },
  USAGE: { code: 'MIDGE_ERR_USAGE', exit: 2 }
} as const

export type ErrorKind = keyof typeof ERR

export class BrokerError extends MidgeError {
  readonly exitCode: number
  /** For configuration errors: every problem found, each already a full line. */
  readonly problems: readonly string[]

  constructor (kind: ErrorKind, message: string, opts: { cause?: unknown, problems?: string[] } = {}) {
    super(ERR[kind].code, message, { cause: opts.cause })
    this.name = 'BrokerError'
    this.exitCode = ERR[kind].exit
    this.problems = opts.problems ?? [message]
  }
}

export function isBrokerError (err: unknown): err is BrokerError {
  return err instanceof BrokerError
}

/** One readable line for an error that stopped start-up (no stack: the user needs the cause, not our frames). */
export function describeError (err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** Why a file could not be read, in a few words for an error line ("no such file", "permission denied", ...). */
export function fileErrorReason (err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory'
  return (err as Error).message
}
