import { expect } from 'vitest'
import { loadConfig, BrokerError, type Config } from '../../src/index.js'

/** Loads config text through the daemon's own path, as the file `m.conf`. */
export function load (text: string): Config {
  return loadConfig({ configText: text, configName: 'm.conf' })
}

/** The problems a config text is refused with (it must be refused, with exit code 3). */
export function problems (text: string): string[] {
  try { load(text) } catch (err) {
    expect(err).toBeInstanceOf(BrokerError)
    expect((err as BrokerError).exitCode).toBe(3)
    return [...(err as BrokerError).problems]
  }
  throw new Error('expected a config error')
}
