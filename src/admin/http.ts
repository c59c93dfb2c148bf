/** Small HTTP helpers for the admin API: JSON bodies with a size limit, JSON answers, field validation. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AdminError, validationError, type FieldProblem } from './errors.js'

/** Largest request body accepted: users, rules and tokens are tiny. */
export const MAX_BODY = 64 * 1024

/** Headers on every admin answer: never cached, never sniffed, never framed. */
export const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer'
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  if (status === 204) { res.writeHead(204, { ...SECURITY_HEADERS, ...headers }).end(); return }
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

export function sendError (res: ServerResponse, err: AdminError): void {
  const error: Record<string, unknown> = { code: err.code, message: err.message }
  if (err.details) error.details = err.details
  sendJson(res, err.status, { error }, err.headers)
}

/** Reads a JSON object body (`content-type: application/json` only: a form post from another site cannot be one). */
export async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') throw new AdminError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json')
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY) { req.resume(); throw new AdminError('PAYLOAD_TOO_LARGE', `request body exceeds ${MAX_BODY} bytes`) }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY) { req.resume(); throw new AdminError('PAYLOAD_TOO_LARGE', `request body exceeds ${MAX_BODY} bytes`) }
    chunks.push(chunk as Buffer)
  }
  let value: unknown
  try { value = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch (err) {
    throw new AdminError('BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AdminError('BAD_JSON', 'request body must be a JSON object')
  return value as Record<string, unknown>
}

/** Collects field problems, then throws them all at once (MIDGE_ERR_ADMIN_VALIDATION). */
export class Fields {
  readonly problems: FieldProblem[] = []

  constructor (private readonly body: Record<string, unknown>, allowed: string[]) {
    for (const k of Object.keys(body)) if (!allowed.includes(k)) this.problems.push({ field: k, message: 'unknown field' })
  }

  string (name: string, opts: { required?: boolean, max?: number, min?: number, check?: (v: string) => string | undefined } = {}): string | undefined {
    const v = this.body[name]
    if (v === undefined || v === null) {
      if (opts.required) this.problems.push({ field: name, message: 'is required' })
      return undefined
    }
    if (typeof v !== 'string') { this.problems.push({ field: name, message: 'must be a string' }); return undefined }
    const bytes = Buffer.byteLength(v)
    if (bytes < (opts.min ?? 0)) { this.problems.push({ field: name, message: opts.min === 1 ? 'must not be empty' : `must be at least ${opts.min!} bytes` }); return undefined }
    if (opts.max !== undefined && bytes > opts.max) { this.problems.push({ field: name, message: `must be at most ${opts.max} bytes` }); return undefined }
    const why = opts.check?.(v)
    if (why) { this.problems.push({ field: name, message: why }); return undefined }
    return v
  }

  boolean (name: string, required = false): boolean | undefined {
    const v = this.body[name]
    if (v === undefined) { if (required) this.problems.push({ field: name, message: 'is required' }); return undefined }
    if (typeof v !== 'boolean') { this.problems.push({ field: name, message: 'must be true or false' }); return undefined }
    return v
  }

  oneOf<T extends string> (name: string, values: readonly T[], required = false): T | undefined {
    const v = this.body[name]
    if (v === undefined) { if (required) this.problems.push({ field: name, message: 'is required' }); return undefined }
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.problems.push({ field: name, message: `must be one of ${values.join(', ')}` })
      return undefined
    }
    return v as T
  }

  add (field: string, message: string): void { this.problems.push({ field, message }) }

  /** Throws when any problem was found. */
  done (): void {
    if (this.problems.length > 0) throw validationError(this.problems)
  }
}

/** Query parameters of a request URL. */
export function queryOf (req: IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://x').searchParams
}
