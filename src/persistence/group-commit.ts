/**
 * Group commit for the LevelDB store: every write (put, del, batch) made during one turn of the event loop goes
 * to LevelDB as one batch, and each caller's promise resolves once that batch is written, so whatever waits on a
 * write (aedes' PUBREC after `incomingStorePacket`, Midge's PUBACK after the journal entry) still waits until it
 * is in the store. While a batch is being written, new writes gather for the next one: one batch in flight, as
 * LevelDB writes one batch at a time anyway.
 *
 * Why: aedes-persistence-level makes one LevelDB call per store operation (a QoS 1 message to a persistent
 * session costs a put for the queue, a get and two puts for the message id, a get and a batch for the PUBACK),
 * and classic-level sends each call to the thread pool on its own. Writes are applied in the order they were
 * made, which is at least as strict as before (separate calls could complete in any order).
 *
 * Reads see every write made before them: the last value put for each key written recently, or its deletion until
 * LevelDB has it, is kept here and a `get` of that key is answered from it, without a LevelDB read.
 * aedes-persistence-level reads back what it has just written on every QoS 1/2 message to a persistent session (the
 * queued message before giving it a message id, the message id on PUBACK): profiled (`node --cpu-prof`,
 * durable-q1-p10 with group commit), LevelDB gets were 25% of the broker's busy time. At most `RECENT_KEYS` keys
 * and `RECENT_BYTES` of values are kept beyond the writes not yet in LevelDB; a put leaves once it is in LevelDB
 * and newer writes have pushed it out (a large retained payload right after its batch), so a get that misses here
 * finds it in LevelDB.
 * `clear` waits for the writes made before it, so that it removes what they wrote, and forgets what it removed.
 * Calls with options other than the value encoding the store already uses go straight through.
 */
import type { ClassicLevel } from 'classic-level'

type Db = ClassicLevel<string, Buffer>
type Op = { type: 'put', key: string, value: Buffer } | { type: 'del', key: string }
interface Waiter { resolve: () => void, reject: (err: Error) => void }
type Opts = Record<string, unknown> | undefined

/**
 * Keys whose last write is kept for reads. A QoS 1/2 message to a persistent session has two keys in the store
 * while it is in flight (its queue entry and its message id): 8,192 covers 20 in flight for 200 such sessions.
 */
const RECENT_KEYS = 8192
/** Bytes of values kept for reads once written: large payloads (a retained firmware image) are not held on to. */
const RECENT_BYTES = 4 * 1024 * 1024

/** The last write of a key: its value, or undefined for a deletion; `seq` orders it among the writes. */
interface Recent { value: Buffer | undefined, seq: number }

/** Options a grouped write may carry: the store's own value encoding, which the batch uses too. */
function groupable (o: Opts): boolean {
  if (o === undefined || o === null) return true
  for (const k in o) {
    if (k !== 'valueEncoding' || (o[k] !== 'buffer' && o[k] !== 'binary')) return false
  }
  return true
}

export interface GroupCommitStats {
  /** Batches written, and the store operations they held. */
  batches: number
  operations: number
}

export class GroupCommit {
  private ops: Op[] = []
  private waiters: Waiter[] = []
  private scheduled = false
  private inFlight = false
  /** Last write per key, oldest first (a key written again moves to the end). */
  private readonly recent = new Map<string, Recent>()
  private recentBytes = 0
  /** Writes queued so far, and the highest of them LevelDB has taken. */
  private seq = 0
  private writtenSeq = 0
  readonly stats: GroupCommitStats = { batches: 0, operations: 0 }

  constructor (private readonly db: Db) {}

  /** The last value written to `key`, if it is still kept: `{ value: undefined }` for a deletion. */
  lastWrite (key: string): Recent | undefined {
    return this.recent.get(key)
  }

  /** Forgets the kept writes LevelDB holds (a `clear` may have removed them); later ones are not written yet. */
  forgetWritten (): void {
    for (const [key, r] of this.recent) if (r.seq <= this.writtenSeq) this.forget(key, r)
  }

  /** Queues writes for the current turn's batch; resolves once they are written. */
  write (ops: Op[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve()
    for (const op of ops) {
      this.ops.push(op)
      const old = this.recent.get(op.key)
      if (old !== undefined) this.forget(op.key, old)
      const value = op.type === 'put' ? op.value : undefined
      this.recent.set(op.key, { value, seq: ++this.seq })
      this.recentBytes += value?.length ?? 0
    }
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      this.schedule()
    })
  }

  /** Resolves once every write queued before the call is written (or failed). */
  barrier (): Promise<void> {
    if (this.ops.length === 0 && !this.inFlight) return Promise.resolve()
    return new Promise<void>(resolve => {
      // a barrier is a waiter without operations: it settles with the batch it joins
      this.waiters.push({ resolve, reject: () => resolve() })
      this.schedule()
    })
  }

  private schedule (): void {
    if (this.scheduled || this.inFlight) return
    this.scheduled = true
    setImmediate(this.flush)
  }

  private readonly flush = (): void => {
    this.scheduled = false
    if (this.waiters.length === 0) return
    const ops = this.ops
    const waiters = this.waiters
    const upTo = this.seq
    this.ops = []
    this.waiters = []
    this.inFlight = true
    const done = ops.length === 0 ? Promise.resolve() : this.db.batch(ops)
    done.then(() => {
      this.stats.batches++
      this.stats.operations += ops.length
      this.inFlight = false
      this.writtenSeq = upTo
      this.forgetWrittenDeletions(ops, upTo)
      this.trim()
      for (const w of waiters) w.resolve()
      // what was queued meanwhile, and what the callers just released write next, in the next turn
      if (this.waiters.length > 0) this.schedule()
    }, (err: Error) => {
      this.inFlight = false
      // what LevelDB refused must not be read back as written (a later write of the key stays)
      for (const op of ops) {
        const r = this.recent.get(op.key)
        if (r !== undefined && r.seq <= upTo) this.forget(op.key, r)
      }
      for (const w of waiters) w.reject(err)
      if (this.waiters.length > 0) this.schedule()
    })
  }

  /**
   * A deletion LevelDB has taken answers a get as LevelDB would, so it is not kept: every QoS 1/2 message to a
   * persistent session ends in deletions (its journal entry, its queue key, its message id), and kept they filled the
   * table to RECENT_KEYS, every entry living long enough to be promoted to V8's old space. Profiled
   * (durable-q1-p10, `--cpu-prof`), this module took 13% of the main thread's busy time with them kept and 8% without,
   * the garbage collector 10% and 8%.
   */
  private forgetWrittenDeletions (ops: Op[], upTo: number): void {
    for (const op of ops) {
      if (op.type !== 'del') continue
      const r = this.recent.get(op.key)
      if (r !== undefined && r.value === undefined && r.seq <= upTo) this.forget(op.key, r)
    }
  }

  /** Drops the oldest kept writes beyond RECENT_KEYS or RECENT_BYTES, only those LevelDB holds already. */
  private trim (): void {
    if (this.recent.size <= RECENT_KEYS && this.recentBytes <= RECENT_BYTES) return
    for (const [key, r] of this.recent) {
      if ((this.recent.size <= RECENT_KEYS && this.recentBytes <= RECENT_BYTES) || r.seq > this.writtenSeq) break
      this.forget(key, r)
    }
  }

  private forget (key: string, r: Recent): void {
    this.recent.delete(key)
    this.recentBytes -= r.value?.length ?? 0
  }
}

/** A chained batch (`db.batch()` with no arguments) whose `write()` joins the group. */
class GroupedChainedBatch {
  private ops: Op[] = []
  constructor (private readonly group: GroupCommit, private readonly db: Db) {}
  get length (): number { return this.ops.length }
  put (key: string, value: Buffer): this { this.ops.push({ type: 'put', key, value }); return this }
  del (key: string): this { this.ops.push({ type: 'del', key }); return this }
  clear (): this { this.ops = []; return this }
  write (opts?: Opts): Promise<void> {
    const ops = this.ops
    this.ops = []
    return groupable(opts) ? this.group.write(ops) : this.db.batch(ops, opts as never)
  }

  close (): Promise<void> { this.ops = []; return Promise.resolve() }
}

/**
 * The store with grouped writes. A Proxy, not a subclass: aedes-persistence-level and Midge's own modules call
 * `put`/`del`/`batch`/`get`/iterators on whatever db they are given.
 */
export function groupCommit (db: Db): { db: Db, group: GroupCommit } {
  const group = new GroupCommit(db)
  const isBuffer = (v: unknown): v is Buffer => Buffer.isBuffer(v)
  const put = (key: string, value: Buffer, o?: Opts): Promise<void> =>
    typeof key === 'string' && isBuffer(value) && groupable(o) ? group.write([{ type: 'put', key, value }]) : db.put(key, value, o as never)
  const del = (key: string, o?: Opts): Promise<void> =>
    typeof key === 'string' && groupable(o) ? group.write([{ type: 'del', key }]) : db.del(key, o as never)
  const batch = (ops?: Array<{ type: string, key: unknown, value?: unknown }>, o?: Opts): unknown => {
    if (ops === undefined) return new GroupedChainedBatch(group, db)
    const plain = groupable(o) && ops.every(op => typeof op.key === 'string' && (op.type === 'del' || (op.type === 'put' && isBuffer(op.value))))
    return plain ? group.write(ops as Op[]) : (db.batch as (ops: unknown, o: unknown) => Promise<void>)(ops, o)
  }
  const clear = (o?: Opts): Promise<void> => group.barrier().then(() => { group.forgetWritten(); return db.clear(o as never) })
  const get = (key: string, o?: Opts): Promise<Buffer | undefined> => {
    const r = typeof key === 'string' && groupable(o) ? group.lastWrite(key) : undefined
    return r !== undefined ? Promise.resolve(r.value) : db.get(key, o as never)
  }
  const own = new Map<PropertyKey, unknown>([['put', put], ['del', del], ['batch', batch], ['clear', clear], ['get', get]])
  // the db's other methods, bound once rather than on every call (a get per message)
  const bound = new Map<PropertyKey, unknown>()
  const wrapped = new Proxy(db, {
    get (target, prop) {
      const mine = own.get(prop)
      if (mine !== undefined) return mine
      const v = Reflect.get(target, prop) as unknown
      if (typeof v !== 'function') return v
      let b = bound.get(prop)
      if (b === undefined) bound.set(prop, b = (v as (...a: unknown[]) => unknown).bind(target))
      return b
    }
  })
  return { db: wrapped, group }
}
