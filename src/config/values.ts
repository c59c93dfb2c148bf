/** Value parsers shared by every option table: mosquitto 2.0.11's rules and wording. */
import type { ConfEntry, ConfProblems } from './mosquitto-conf.js'

export function one (e: ConfEntry, p: ConfProblems): string | undefined {
  const v = e.args[0]
  if (v === undefined || v === '') { p.error(e, `Empty ${e.key} value in configuration.`); return undefined }
  if (e.args.length > 1) p.warn(e, `Extra arguments after ${e.key} value ignored: ${e.args.slice(1).join(' ')}`)
  return v
}

/** A path or string value: the rest of the line, as mosquitto reads it (spaces included, `#` included). */
export function str (e: ConfEntry, p: ConfProblems): string | undefined {
  const v = e.rest
  if (v === '') { p.error(e, `Empty ${e.key} value in configuration.`); return undefined }
  if (/\s#/.test(v)) p.warn(e, `The ${e.key} value is the rest of the line, "#" included (as in mosquitto): "${v}". Put comments on their own line.`)
  return v
}

/**
 * A string value that may be set once per scope: mosquitto refuses a second one ("Duplicate ... value"), so a
 * second password_file cannot silently replace the first.
 */
export function strOnce (e: ConfEntry, p: ConfProblems, current: string | undefined): string | undefined {
  const v = str(e, p)
  if (v === undefined) return undefined
  if (current !== undefined) { p.error(e, `Duplicate ${e.key} value in configuration.`); return undefined }
  return v
}

export function bool (e: ConfEntry, p: ConfProblems): boolean | undefined {
  const v = one(e, p)
  if (v === undefined) return undefined
  if (v === 'true') return true
  if (v === 'false') return false
  p.error(e, `Invalid ${e.key} value (${v}).`)
  return undefined
}

export function int (e: ConfEntry, p: ConfProblems, min: number, max: number): number | undefined {
  const v = one(e, p)
  if (v === undefined) return undefined
  if (!/^-?\d+$/.test(v)) { p.error(e, `Invalid ${e.key} value (${v}).`); return undefined }
  const n = Number(v)
  if (n < min || n > max) { p.error(e, `Invalid ${e.key} value (${v}).`); return undefined }
  return n
}
