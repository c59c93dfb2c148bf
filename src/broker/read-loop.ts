/**
 * aedes 1.2.0 reads a connection one batch at a time: `_parsingBatch` counts the packets of the last read still
 * being handled, and the next `read()` happens when the last of them is done (lib/client.js `nextBatch`). That is
 * the broker's backpressure: a publisher whose messages wait for a slow subscriber is not read until they are
 * delivered, so TCP slows it down. But aedes calls the same `nextBatch` on every 'readable' event of the socket,
 * and each call counts as one finished packet: whenever more bytes arrive, a publisher's next batch is read while
 * the previous one still waits. With QoS 1 (aedes writes the PUBACK before it routes the message) the publisher is
 * acknowledged and sends on without limit, and what a subscriber cannot take piles up until its queue limit drops
 * it. Measured with `npm run bench -- --scenario memory-q1-p10` (10 QoS 1 publishers, one persistent subscriber
 * with the default window of 20): 55.7k msg/s acknowledged to the publishers, 14.5k delivered, the rest dropped
 * at `max_queued_messages`, 75 us of broker CPU per delivered message.
 *
 * Midge lets a 'readable' event through only while no batch is in progress (aedes' counter starts at 1 for the
 * first read, which the first 'readable' consumes). One that arrives during a batch is remembered: when the batch
 * ends and aedes' own read found no complete packet, it reads once more, so bytes that arrived meanwhile are not
 * left waiting for a 'readable' that will not come. Test: 16-inflight "a publisher is not read while its
 * messages wait for the window".
 */
interface AedesReadLoop {
  _parsingBatch: number
  _nextBatch: (err?: Error | null) => void
  conn: { removeListener: (event: 'readable', fn: () => void) => void, on: (event: 'readable', fn: () => void) => void }
}

export function readOneBatchAtATime (aedesClient: unknown): void {
  const client = aedesClient as AedesReadLoop
  const nextBatch = client._nextBatch
  let first = true
  let missed = false
  client.conn.removeListener('readable', nextBatch)
  client.conn.on('readable', () => {
    if (!first && client._parsingBatch > 0) { missed = true; return }
    first = false
    nextBatch()
  })
  // aedes passes `client._nextBatch` as the done callback of every packet it handles
  client._nextBatch = function batchDone (err) {
    nextBatch(err)
    if (missed && client._parsingBatch <= 0) {
      missed = false
      nextBatch()
    }
  }
}
