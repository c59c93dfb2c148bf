/**
 * A new subscription's retained messages, many per event-loop turn instead of one per two turns.
 *
 * aedes pipes the store's retained messages into a stream that hands the next one to `deliverQoS` only when the
 * last one's callback ran, and that callback runs a turn after the write, which itself runs a turn after
 * `deliverQoS` (its `setImmediate`s): two turns per message, each written on its own. A profile of 10,000 retained
 * messages to a new `#` subscriber (retained messages already in memory) had 63% of the broker's busy time in the
 * `write` system call, one per message.
 *
 * Here the callback of a retained message runs at once while fewer than `RETAINED_AHEAD` of this client's retained
 * messages are handed on and not yet written and its socket asks for no drain; past that, the stream waits for the
 * message's own write as before. The messages go on to Midge's delivery layer (and aedes) in the same order, one
 * `deliverQoS` call each, so the window, the duplicate filter and authorizeForward see them as before; the ones
 * of one turn leave in one write (../write-coalescer.ts). aedes passes no error to that callback (its write errors
 * close the client), so answering it early hides nothing.
 */
import { isRetainedOnSubscribe, type Deliver, type DeliveryBuilder } from '../../aedes/internals.js'

/** Retained messages per client handed on and not yet written before the stream waits for a write. */
export const RETAINED_AHEAD = 256

export function sendRetainedInBatches (build: DeliveryBuilder): DeliveryBuilder {
  return function buildWithRetainedBatches (client, origQoS, orig0, connect) {
    const pair = build(client, origQoS, orig0, connect)
    const deliverQoS: Deliver = pair.deliverQoS
    let unwritten = 0
    const written = (): void => { unwritten-- }
    pair.deliverQoS = function deliverRetainedAhead (packet, cb) {
      if (!isRetainedOnSubscribe(packet) || unwritten >= RETAINED_AHEAD || client.closed || client.conn.writableNeedDrain) {
        deliverQoS(packet, cb)
        return
      }
      unwritten++
      deliverQoS(packet, written)
      cb()
    }
    return pair
  }
}
