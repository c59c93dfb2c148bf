/** Library surface: what tests and embedders use. */
import { Broker } from './broker/broker.js'
import type { Config } from './config/schema.js'
import { silentLogger, type Logger } from './logging/logger.js'

export { Broker } from './broker/broker.js'
export { loadConfig, type LoadOptions, type CliOverrides } from './config/load.js'
export type { Config, ListenerConfig, Transport } from './config/schema.js'
export { MidgeError, isMidgeError, BrokerError, ERR } from './errors.js'
export { createLogger, type Logger } from './logging/logger.js'
export { VERSION } from './version.js'

export function startBroker (config: Config, opts: { log?: Logger } = {}): Promise<Broker> {
  return Broker.start(config, { log: opts.log ?? silentLogger() })
}
