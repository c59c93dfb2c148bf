/**
 * Publish order through the store [MQTT-4.6.0-6]. For QoS 1/2, aedes writes each message to the store (retained
 * store, then the offline/outgoing queues of persistent sessions) and only then hands it to the live subscribers.
 * LevelDB completes concurrent writes in any order, so a later message could reach a live persistent subscriber
 * before an earlier one on the same topic (test: 02-subpub "a burst of 1200 QoS 1 publishes ... persistence true":
 * 11 to 21 of 1200 swapped). This wrapper lets the writes run concurrently but resolves them in the order they
 * were started, so aedes continues each publish in arrival order. The cost is head-of-line waiting for the
 * slowest write of a batch, which LevelDB batches anyway.
 */
type AsyncMethod = (...args: unknown[]) => Promise<unknown>

/**
 * `outgoingUpdate` too: aedes writes a message to a persistent session, or a PUBREL, once it resolves. Resolved out
 * of order, PUBRELs left in another order than their PUBRECs came [MQTT-4.6.0-3] (15-persist: MQTT.js, which hands
 * a QoS 2 message over on PUBREL, got b-91 before b-90). It was serialized per client before (one LevelDB round
 * trip at a time per subscriber): level-q1-p10 delivered 1,850-2,189 msg/s that way and 3,541-3,582 this way
 * (quick bench runs, same build otherwise).
 */
const ORDERED = new Set(['storeRetained', 'outgoingEnqueueCombi', 'outgoingEnqueue', 'outgoingUpdate'])

export function resolveInCallOrder<T extends object> (persistence: T): T {
  let tail: Promise<unknown> = Promise.resolve()
  const wrapped = new Map<PropertyKey, AsyncMethod>()
  return new Proxy(persistence, {
    get (target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown
      if (typeof v !== 'function') return v
      let w = wrapped.get(prop)
      if (w === undefined) {
        const fn = (v as AsyncMethod).bind(target)
        // bound once, not on every call
        w = !ORDERED.has(prop as string)
          ? fn
          : (...args: unknown[]) => {
              // callback style (last argument a function) is not used by aedes 1.x for these methods: pass it through
              if (typeof args[args.length - 1] === 'function') return fn(...args)
              const started = fn(...args)
              const previous = tail
              const inOrder = started.then(r => previous.then(() => r), err => previous.then(() => { throw err }))
              // the caller gets the error through inOrder; the chain only keeps the order
              tail = inOrder.catch(() => {})
              return inOrder
            }
        wrapped.set(prop, w)
      }
      return w
    }
  })
}
