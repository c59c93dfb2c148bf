import type { ClassicLevel } from 'classic-level'
import type { PersistenceConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { PublishJournal } from './journal.js'

/** Wraps (does not reinvent) an aedes-persistence instance plus what Midge needs around it. */
export interface PersistenceBackend {
  readonly name: string
  /** The object handed to aedes as `persistence` (before Midge's wrappers, see durability.ts). */
  readonly aedes: unknown
  /** The LevelDB handle, for the LevelDB backend only: Midge's own keys (journal, last-seen) live beside aedes'. */
  readonly db?: ClassicLevel<string, Buffer>
  /**
   * A broker id that sorts after the ids of every earlier start on this store (LevelDB only). aedes keys a
   * client's offline queue by `brokerId:counter`; with its default random UUID, messages queued before and after a
   * restart come back in random order.
   */
  readonly brokerId?: string
  /** fsync writes that precede an acknowledgement (`persistence_sync true`). */
  readonly sync: boolean
  /**
   * The store is shared with other processes (cluster_redis): per-process queue accounting (limits.ts)
   * cannot see what other nodes enqueue and drain, so Durability does not wrap it.
   */
  readonly shared?: boolean
  /** A QoS 1 journal the backend keeps itself (Redis: src/cluster/journal.ts); otherwise LevelDB's, if `db`. */
  readonly journal?: JournalStore
  /** Releases the store (and its lock). Safe to call twice. */
  close (): Promise<void>
}

/** What Durability needs of a QoS 1 journal (persistence/journal.ts in LevelDB, cluster/journal.ts in Redis). */
export type JournalStore = Pick<PublishJournal, 'pending' | 'record' | 'complete' | 'remove' | 'flush'> & Partial<Pick<PublishJournal, 'settled'>>

export type PersistenceFactory = (cfg: PersistenceConfig, log: Logger) => Promise<PersistenceBackend>
