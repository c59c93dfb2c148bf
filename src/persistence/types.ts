import type { PersistenceConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'

/** Wraps (does not reinvent) an aedes-persistence instance plus what Midge needs around it. */
export interface PersistenceBackend {
  readonly name: string
  /** The object handed to aedes as `persistence`. */
  readonly aedes: unknown
  /** Releases the store (and its lock). Safe to call twice. */
  close (): Promise<void>
}

export type PersistenceFactory = (cfg: PersistenceConfig, log: Logger) => Promise<PersistenceBackend>
