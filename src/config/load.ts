/**
 * One typed, validated, frozen Config from the layers: embedded defaults < config file < command-line flags.
 */
import { BrokerError } from '../errors.js'
import { type Config, LOG_TYPES } from './schema.js'
import { ConfProblems, buildConfig, expandIncludes, lexConf, readConfFile } from './mosquitto-conf.js'
import { resolve } from 'node:path'

export interface CliOverrides {
  /** mosquitto `-p`: replaces the port of the local-only listener (ignored when the file configures listeners, as in mosquitto 2). */
  ports?: number[]
  /** mosquitto `-v`: log_type all */
  verbose?: boolean
}

export interface LoadOptions extends CliOverrides {
  configFile?: string
  /** Config text instead of a file (tests, embedders). `configName` names it in errors. */
  configText?: string
  configName?: string
}

export function loadConfig (opts: LoadOptions = {}): Config {
  const p = new ConfProblems()
  let entries = opts.configText !== undefined ? expandIncludes(lexConf(opts.configText, opts.configName ?? '<config>'), p) : []
  if (opts.configFile !== undefined) entries = readConfFile(opts.configFile, p)
  const cfg = buildConfig(entries, p)
  if (opts.configFile !== undefined) cfg.configFile = resolve(opts.configFile)
  applyCli(cfg, opts, p)
  if (p.errors.length > 0) {
    throw new BrokerError('CONFIG_INVALID', p.errors.join('\n'), { problems: p.errors })
  }
  return deepFreeze(cfg)
}

function applyCli (cfg: Config, o: CliOverrides, p: ConfProblems): void {
  if (o.ports && o.ports.length > 0) {
    if (cfg.localOnly) {
      const template = cfg.listeners[0]!
      cfg.listeners = o.ports.map((port, i) => ({ ...structuredClone(template), port, id: i === 0 ? `tcp:${port}` : `tcp:${port}-${i + 1}` }))
    } else {
      p.warn(undefined, '-p is ignored because the config file defines listeners (as in mosquitto 2).')
      cfg.warnings.push(p.warnings[p.warnings.length - 1]!)
    }
  }
  if (o.verbose) cfg.log.types = [...LOG_TYPES]
}

function deepFreeze<T> (o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
