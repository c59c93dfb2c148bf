/**
 * A drop-in for the `mq` emitter aedes is given (mqemitter's interface: on / removeListener /
 * removeAllListeners / emit / close), tuned for a single process.
 *
 * Why not mqemitter 7: it caps messages in flight at `concurrency` (aedes passes 100) and queues the rest. Each
 * completion dispatches the next queued message from inside the completion callback, so when listeners finish
 * synchronously (no subscriber for the topic, `$` topics skipped by a `#` subscriber) the queue is drained by
 * recursion, one stack frame group per queued message: under a QoS 0 flood from 20 publishers the queue holds
 * thousands of messages and the broker dies with `RangeError: Maximum call stack size exceeded`. The cap does not
 * provide backpressure either: aedes already reads a publisher's next chunk only once every message of the last
 * chunk has been delivered (or its subscriber's socket drained), so the queue only adds latency and work.
 *
 * This emitter dispatches every message at once, in publish order, to the listeners that match it. Matching
 * follows qlobber as mqemitter configures it for aedes: `/` separates levels, `+` matches exactly one level (an
 * empty one too), `#` matches the parent level and any number of levels below it, and the same listener added
 * twice is called twice. `$` topics are not special here: aedes wraps the listener of a filter starting with a
 * wildcard so that it skips them [MQTT-4.7.2-1].
 */

export interface EmitterMessage {
  topic: string
  [key: string]: unknown
}

export type Done = (err?: Error | null) => void
export type Listener = (message: EmitterMessage, done: Done) => void

class Node {
  /** Children by literal level. */
  readonly children = new Map<string, Node>()
  /** The `+` child. */
  plus: Node | undefined
  /** Listeners of filters ending with `#` at this node. */
  hash: Listener[] | undefined
  /** Listeners of filters ending at this node. */
  here: Listener[] | undefined

  isEmpty (): boolean {
    return this.children.size === 0 && this.plus === undefined &&
      (this.hash === undefined || this.hash.length === 0) && (this.here === undefined || this.here.length === 0)
  }
}

const SEPARATOR = '/'
const noop: Done = () => {}

/** Tracks the listeners of one emitted message and calls back once, when all are done or on the first error. */
class Delivery {
  remaining: number
  finished = false
  readonly done: Done

  constructor (count: number, private readonly cb: Done) {
    this.remaining = count
    this.done = (err) => {
      if (this.finished) return
      if (err) {
        this.finished = true
        this.cb(err)
        return
      }
      if (--this.remaining === 0) {
        this.finished = true
        this.cb()
      }
    }
  }
}

export class TopicEmitter {
  private readonly root = new Node()
  /** Matching a topic allocates; most traffic repeats a few topics, so results are cached until the next (un)subscribe. */
  private cache = new Map<string, Listener[]>()
  private readonly cacheLimit: number
  closed = false

  constructor (opts: { cacheLimit?: number } = {}) {
    this.cacheLimit = opts.cacheLimit ?? 10_000
  }

  on (topic: string, notify: Listener, done?: () => void): this {
    if (!topic || typeof notify !== 'function') throw new TypeError('topic and listener are required')
    const levels = topic.split(SEPARATOR)
    let node = this.root
    const last = levels.length - 1
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!
      if (level === '#' && i === last) {
        (node.hash ??= []).push(notify)
        this.invalidate()
        if (done) setImmediate(done)
        return this
      }
      if (level === '+') {
        node = (node.plus ??= new Node())
      } else {
        let child = node.children.get(level)
        if (child === undefined) {
          child = new Node()
          node.children.set(level, child)
        }
        node = child
      }
    }
    (node.here ??= []).push(notify)
    this.invalidate()
    if (done) setImmediate(done)
    return this
  }

  /** As mqemitter: the listener is removed on the next turn of the event loop (messages in flight still reach it). */
  removeListener (topic: string, notify: Listener, done?: () => void): this {
    if (!topic || typeof notify !== 'function') throw new TypeError('topic and listener are required')
    setImmediate(() => {
      this.remove(topic, notify)
      if (done) done()
    })
    return this
  }

  removeAllListeners (topic: string, done?: () => void): this {
    if (!topic) throw new TypeError('topic is required')
    this.remove(topic, undefined)
    if (done) setImmediate(done)
    return this
  }

  emit (message: EmitterMessage, cb?: Done): this {
    const callback = cb ?? noop
    if (this.closed) {
      callback(new Error('mqemitter is closed'))
      return this
    }
    const matches = this.match(message.topic)
    const n = matches.length
    if (n === 0) {
      callback()
      return this
    }
    if (n === 1) {
      // the common case (one subscriber): no bookkeeping object
      let called = false
      matches[0]!.call(this, message, (err) => {
        if (called) return
        called = true
        callback(err)
      })
      return this
    }
    const d = new Delivery(n, callback)
    // iterate over a snapshot: a listener may subscribe or unsubscribe synchronously
    for (let i = 0; i < n && !d.finished; i++) matches[i]!.call(this, message, d.done)
    return this
  }

  close (cb?: () => void): this {
    this.closed = true
    if (cb) setImmediate(cb)
    return this
  }

  /** Listeners matching a topic name, in a stable order (literal levels, then `+`, `#` before deeper levels). */
  match (topic: string): Listener[] {
    const cached = this.cache.get(topic)
    if (cached !== undefined) return cached
    const out: Listener[] = []
    collect(this.root, topic.split(SEPARATOR), 0, out)
    if (this.cache.size >= this.cacheLimit) this.cache = new Map()
    this.cache.set(topic, out)
    return out
  }

  private invalidate (): void {
    if (this.cache.size > 0) this.cache = new Map()
  }

  private remove (topic: string, notify: Listener | undefined): void {
    const levels = topic.split(SEPARATOR)
    const path: Array<[Node, string]> = []
    let node: Node | undefined = this.root
    const last = levels.length - 1
    for (let i = 0; i < levels.length && node !== undefined; i++) {
      const level = levels[i]!
      if (level === '#' && i === last) {
        if (node.hash !== undefined) node.hash = removeFrom(node.hash, notify)
        this.prune(path, node)
        this.invalidate()
        return
      }
      path.push([node, level])
      node = level === '+' ? node.plus : node.children.get(level)
    }
    if (node === undefined) return
    if (node.here !== undefined) node.here = removeFrom(node.here, notify)
    this.prune(path, node)
    this.invalidate()
  }

  /** Drops empty nodes bottom-up so that a churn of distinct filters does not grow the trie. */
  private prune (path: Array<[Node, string]>, leaf: Node): void {
    let node = leaf
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const [parent, level] = path[i]!
      if (level === '+') parent.plus = undefined
      else parent.children.delete(level)
      node = parent
    }
  }
}

/** qlobber's `remove(topic, fn)` removes the last occurrence; `remove(topic)` removes them all. */
function removeFrom (list: Listener[], notify: Listener | undefined): Listener[] | undefined {
  if (notify === undefined) return undefined
  const i = list.lastIndexOf(notify)
  if (i < 0) return list
  // copy: a cached match result or an emit in progress may share the old array
  const next = list.slice()
  next.splice(i, 1)
  return next.length === 0 ? undefined : next
}

function collect (node: Node, levels: string[], i: number, out: Listener[]): void {
  // `#` matches the parent level too: `a/#` matches `a` [MQTT-4.7.1-2]
  if (node.hash !== undefined) for (const l of node.hash) out.push(l)
  if (i === levels.length) {
    if (node.here !== undefined) for (const l of node.here) out.push(l)
    return
  }
  const child = node.children.get(levels[i]!)
  if (child !== undefined) collect(child, levels, i + 1, out)
  if (node.plus !== undefined) collect(node.plus, levels, i + 1, out)
}
