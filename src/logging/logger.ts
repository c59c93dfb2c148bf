/**
 * pino factory. JSON lines by default; human-readable only when writing to a TTY. mosquitto's `log_type`
 * set maps onto one pino level; `log_dest` onto one or more destinations. Passwords are redacted wherever
 * they might appear.
 */
import pino, { type Logger, type DestinationStream, type LevelWithSilent } from 'pino'
import { createRequire } from 'node:module'
import type { LogConfig } from '../config/schema.js'

/** pino-pretty is loaded only for a terminal (a daemon under systemd or Docker writes JSON and never needs it). */
const require = createRequire(import.meta.url)
type Pretty = typeof import('pino-pretty')

export type { Logger }

export function levelFor (types: readonly string[]): LevelWithSilent {
  if (types.includes('debug')) return 'debug'
  if (types.includes('information') || types.includes('notice') || types.includes('subscribe') || types.includes('unsubscribe')) return 'info'
  if (types.includes('warning')) return 'warn'
  if (types.includes('error')) return 'error'
  return 'silent'
}

function streamFor (fd: 1 | 2): DestinationStream {
  const stream = fd === 1 ? process.stdout : process.stderr
  if (stream.isTTY && process.env.MIDGE_LOG_FORMAT !== 'json') {
    const pretty = require('pino-pretty') as Pretty
    return pretty({ destination: fd, sync: true, colorize: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' })
  }
  return pino.destination({ dest: fd, sync: true })
}

export function createLogger (cfg: LogConfig, bindings: Record<string, unknown> = {}): Logger {
  const streams: pino.StreamEntry[] = []
  const level = levelFor(cfg.types)
  for (const d of cfg.dest) {
    if (d.kind === 'none') continue
    const stream = d.kind === 'stdout' ? streamFor(1) : d.kind === 'stderr' ? streamFor(2) : pino.destination({ dest: d.path, mkdir: true, sync: true })
    streams.push({ level: level === 'silent' ? 'fatal' : level, stream })
  }
  const options: pino.LoggerOptions = {
    level: streams.length === 0 ? 'silent' : level,
    base: { pid: process.pid, ...bindings },
    timestamp: cfg.timestamp ? pino.stdTimeFunctions.isoTime : false,
    redact: { paths: ['password', '*.password', 'passwd', '*.passwd', 'authorization', '*.authorization'], censor: '[redacted]' }
  }
  if (streams.length === 1) return pino(options, streams[0]!.stream)
  return pino(options, pino.multistream(streams))
}

/** A logger that writes nothing (embedders and tests that do not care). */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
