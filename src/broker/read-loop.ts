/**
 * aedes reads a connection one batch at a time: `_parsingBatch` counts the packets of the last read still
 * being handled, and the next `read()` happens when the last of them is done (lib/client.js `nextBatch`). That is
 * the broker's backpressure: a publisher whose messages wait for a slow subscriber is not read until they are
 * delivered, so TCP slows it down. But aedes calls the same `nextBatch` on every 'readable' event of the socket,
 * and each call counts as one finished packet: whenever more bytes arrive, a publisher's next batch is read while
 * the previous one still waits. With QoS 1 (aedes writes the PUBACK before it routes the message) the publisher is
 * acknowledged and sends on without limit, and what a subscriber cannot take piles up until its queue limit drops
 * it. Measured with `npm run bench -- --scenario memory-q1-p10` (10 QoS 1 publishers, one persistent subscriber
 * with the default window of 20): 52.5k msg/s acknowledged to the publishers, 15.5k delivered, the rest dropped
 * at `max_queued_messages`.
 *
 * Midge lets a 'readable' event through only while no batch is in progress. One that arrives during a batch is
 * not needed: when the batch ends aedes reads again, and every read that returns something hands it a complete
 * packet (the read cap in inbound-framer.ts cuts only before one), whose end reads again, until a read finds the socket
 * empty and the next bytes bring a 'readable' of their own. Test: 16-inflight "a publisher is not read while its
 * messages wait for the window".
 */
import type { Duplex } from 'node:stream'
import type { Client } from 'aedes'
import { clientInternals, clientOfConnection } from '../aedes/internals.js'

export function readOneBatchAtATime (aedesClient: Client): void {
  const client = clientInternals(aedesClient)
  // aedes starts the count at 1 for its first 'readable' to take; nothing has been read yet
  client._parsingBatch = 0
  client.conn.removeListener('readable', client._nextBatch)
  client.conn.on('readable', readWhenIdle)
}

/** One listener for every connection (no closure per connection): aedes' own `nextBatch`, while no batch runs. */
function readWhenIdle (this: Duplex): void {
  const client = clientOfConnection(this)
  if (client === undefined) return
  const c = clientInternals(client)
  if (c._parsingBatch <= 0) c._nextBatch()
}
