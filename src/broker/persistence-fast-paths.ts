/**
 * The outermost wrapper around the store aedes is given, for two per-message costs:
 *
 * 1. aedes looks up every new QoS 2 PUBLISH with `incomingGetPacket` and takes the rejection as "new message".
 *    aedes-persistence's memory store rejects by throwing `new Error('no such packet')`, so the normal path of every
 *    QoS 2 message captures a stack trace. Profiled (`node --cpu-prof`, QoS 2, 10 publishers): 9% of the broker's
 *    CPU in `incomingGetPacket`; measured alone, a miss costs 17 us, 6.8 us without the stack. The lookup runs
 *    here with `Error.stackTraceLimit = 0`: same rejection, same message, no stack.
 * 2. aedes 2.0.0-beta.1 deletes a QoS 2 message on PUBREL with `incomingDelPacket(...).finally(done)`: a rejection
 *    (the memory store rejects a second PUBREL for the same id, which a client may send when it retries) escapes
 *    as an unhandled rejection and ends the process. aedes answers PUBCOMP either way, so a failed delete changes
 *    nothing for the client: it is settled here (logged at debug). Test: 21-fuzz "a repeated PUBREL".
 * 3. aedes sends a new subscription its retained messages with `createRetainedStreamCombi(...).pipe(...)`; `pipe`
 *    does not pass errors on, so a read error (the store closing under a SUBSCRIBE at shutdown: LevelDB's
 *    LEVEL_ITERATOR_NOT_OPEN) was an unhandled 'error' event and the process exited 1 instead of 0. The stream
 *    gets a listener here that logs it (the subscriber just gets no more retained messages). Test: midge-cli
 *    "SIGTERM and SIGINT", under load.
 * 4. The wrappers Midge stacks around the store (queue limits, DUP on resend) are Proxies that `bind` the method on
 *    every access, an allocation per store call. Methods are looked up and bound once here and reused; other
 *    properties are read through every time.
 */
type AnyFn = (...args: unknown[]) => unknown

export function persistenceFastPaths<T extends object> (persistence: T, onDeleteFailed: (err: Error) => void, onStreamError: (err: Error) => void = () => {}): T {
  const methods = new Map<PropertyKey, AnyFn>()
  return new Proxy(persistence, {
    get (target, prop) {
      const cached = methods.get(prop)
      if (cached !== undefined) return cached
      // receiver = target: getters of aedes-persistence-level read private fields
      const v = Reflect.get(target, prop) as unknown
      if (typeof v !== 'function') return v
      let fn = (v as AnyFn).bind(target)
      if (prop === 'incomingGetPacket') fn = withoutStack(fn)
      else if (prop === 'incomingDelPacket') fn = settled(fn, onDeleteFailed)
      else if (prop === 'createRetainedStreamCombi') fn = withErrorListener(fn, onStreamError)
      methods.set(prop, fn)
      return fn
    }
  })
}

function withoutStack (fn: AnyFn): AnyFn {
  // fn is async: its `throw` happens synchronously inside this call (while the limit is 0) and becomes a rejection
  return function incomingGetPacket (...args: unknown[]) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      return fn(...args)
    } finally {
      Error.stackTraceLimit = limit
    }
  }
}

function settled (fn: AnyFn, onFailed: (err: Error) => void): AnyFn {
  return function incomingDelPacket (...args: unknown[]) {
    return (fn(...args) as Promise<unknown>).catch(onFailed)
  }
}

function withErrorListener (fn: AnyFn, onError: (err: Error) => void): AnyFn {
  return function createRetainedStreamCombi (...args: unknown[]) {
    const stream = fn(...args) as { on (event: 'error', listener: (err: Error) => void): unknown }
    stream.on('error', onError)
    return stream
  }
}
