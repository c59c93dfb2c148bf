/**
 * Stable error codes of the admin API (`/api/v1`). Every error answer is JSON:
 *   { "error": { "code": "MIDGE_ERR_ADMIN_...", "message": "...", "details": [{ "field": "...", "message": "..." }] } }
 * The code and the HTTP status never change for a given condition; the message is for people and may.
 * docs/openapi.yaml, docs/errors.md and README.md list the same table (tests keep them in sync).
 */
import { MidgeError } from '../errors.js'

export const ADMIN_ERR = {
  UNAUTHENTICATED: { code: 'MIDGE_ERR_ADMIN_UNAUTHENTICATED', status: 401 },
  FORBIDDEN: { code: 'MIDGE_ERR_ADMIN_FORBIDDEN', status: 403 },
  CSRF: { code: 'MIDGE_ERR_ADMIN_CSRF', status: 403 },
  RATE_LIMITED: { code: 'MIDGE_ERR_ADMIN_RATE_LIMITED', status: 429 },
  NOT_FOUND: { code: 'MIDGE_ERR_ADMIN_NOT_FOUND', status: 404 },
  METHOD_NOT_ALLOWED: { code: 'MIDGE_ERR_ADMIN_METHOD_NOT_ALLOWED', status: 405 },
  UNSUPPORTED_MEDIA_TYPE: { code: 'MIDGE_ERR_ADMIN_UNSUPPORTED_MEDIA_TYPE', status: 415 },
  PAYLOAD_TOO_LARGE: { code: 'MIDGE_ERR_ADMIN_PAYLOAD_TOO_LARGE', status: 413 },
  BAD_JSON: { code: 'MIDGE_ERR_ADMIN_BAD_JSON', status: 400 },
  VALIDATION: { code: 'MIDGE_ERR_ADMIN_VALIDATION', status: 400 },
  USER_EXISTS: { code: 'MIDGE_ERR_ADMIN_USER_EXISTS', status: 409 },
  USER_NOT_FOUND: { code: 'MIDGE_ERR_ADMIN_USER_NOT_FOUND', status: 404 },
  RULE_EXISTS: { code: 'MIDGE_ERR_ADMIN_RULE_EXISTS', status: 409 },
  RULE_NOT_FOUND: { code: 'MIDGE_ERR_ADMIN_RULE_NOT_FOUND', status: 404 },
  CLIENT_NOT_FOUND: { code: 'MIDGE_ERR_ADMIN_CLIENT_NOT_FOUND', status: 404 },
  TOKEN_EXISTS: { code: 'MIDGE_ERR_ADMIN_TOKEN_EXISTS', status: 409 },
  TOKEN_NOT_FOUND: { code: 'MIDGE_ERR_ADMIN_TOKEN_NOT_FOUND', status: 404 },
  NO_PASSWORD_FILE: { code: 'MIDGE_ERR_ADMIN_NO_PASSWORD_FILE', status: 409 },
  NO_ACL_FILE: { code: 'MIDGE_ERR_ADMIN_NO_ACL_FILE', status: 409 },
  NO_TOKEN_FILE: { code: 'MIDGE_ERR_ADMIN_NO_TOKEN_FILE', status: 409 },
  FILE_INVALID: { code: 'MIDGE_ERR_ADMIN_FILE_INVALID', status: 409 },
  FILE_WRITE: { code: 'MIDGE_ERR_ADMIN_FILE_WRITE', status: 500 },
  INTERNAL: { code: 'MIDGE_ERR_ADMIN_INTERNAL', status: 500 }
} as const

export type AdminErrorKind = keyof typeof ADMIN_ERR

export interface FieldProblem { field: string, message: string }

export class AdminError extends MidgeError {
  readonly status: number

  constructor (readonly kind: AdminErrorKind, message: string, readonly details?: FieldProblem[], readonly headers?: Record<string, string>) {
    super(ADMIN_ERR[kind].code, message)
    this.name = 'AdminError'
    this.status = ADMIN_ERR[kind].status
  }
}

export function validationError (details: FieldProblem[]): AdminError {
  return new AdminError('VALIDATION', details.map(d => `${d.field}: ${d.message}`).join('; '), details)
}
