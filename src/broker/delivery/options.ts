import type { Logger } from '../../logging/logger.js'
import type { PersistenceStats, QueueAccounting } from '../../persistence/limits.js'

/** The limits of live delivery: one object per broker, shared by every client (no memory per idle connection). */
export interface DeliveryOptions {
  /** Messages waiting for one client's socket before new ones are dropped; 0 = no limit. */
  maxPending: number
  /** QoS 1/2 messages sent to one client and not yet acknowledged (`max_inflight_messages`); 0 = no limit. */
  maxInflight?: number
  /** Messages waiting for a slot in that window before new ones are dropped (`max_queued_messages`); 0 = no limit. */
  maxWaiting?: number
  /** Bytes buffered for one client's socket before new messages are dropped; 0 = no limit. */
  maxPendingBytes: number
  /** A client none of whose writes completed for this long is stuck: publishers stop waiting for it. */
  stuckAfterMs: number
  stats: PersistenceStats
  accounting?: QueueAccounting
  log: Logger
}
