/** Group commit on a real LevelDB: one batch per event-loop turn, callers released only once it is written. */
import { test, expect } from 'vitest'
import { groupCommit } from '../../src/persistence/group-commit.js'
import { openTempLevel } from '../helpers/level-db.js'

const b = (s: string): Buffer => Buffer.from(s)

test('puts, dels, array and chained batches of one turn are one LevelDB batch, applied in call order', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  await raw.put('gone', b('old'))
  const { db, group } = groupCommit(raw)
  const calls: string[] = []
  const spy = raw.batch.bind(raw)
  raw.batch = ((...args: unknown[]) => { calls.push(`batch ${(args[0] as unknown[] | undefined)?.length ?? 'chained'}`); return (spy as (...a: unknown[]) => unknown)(...args) }) as typeof raw.batch
  const order: string[] = []
  const chained = db.batch()
  chained.put('c1', b('chained'))
  chained.del('gone')
  await Promise.all([
    db.put('k', b('1')).then(() => order.push('put k')),
    db.del('k').then(() => order.push('del k')),
    db.put('k2', b('2'), { valueEncoding: 'buffer' }).then(() => order.push('put k2')),
    db.batch([{ type: 'put', key: 'k3', value: b('3') }, { type: 'put', key: 'k', value: b('last') }]).then(() => order.push('batch')),
    chained.write().then(() => order.push('chained'))
  ])
  expect(calls).toEqual(['batch 7'])
  expect(group.stats).toEqual({ batches: 1, operations: 7 })
  expect(order).toEqual(['put k', 'del k', 'put k2', 'batch', 'chained'])
  // the del of 'k' came after its first put and before the batch's put: call order decides
  expect((await raw.get('k'))?.toString()).toBe('last')
  expect((await raw.get('k2'))?.toString()).toBe('2')
  expect((await raw.get('k3'))?.toString()).toBe('3')
  expect((await raw.get('c1'))?.toString()).toBe('chained')
  expect(await raw.get('gone')).toBeUndefined()
})

test('a caller is released only after its write is readable, and writes made meanwhile go in the next batch', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  const { db, group } = groupCommit(raw)
  const seen: Array<string | undefined> = []
  await Promise.all([
    db.put('a', b('A')).then(async () => {
      seen.push((await raw.get('a'))?.toString())
      // written after the first batch completed: a second batch
      await db.put('b', b('B'))
      seen.push((await raw.get('b'))?.toString())
    }),
    db.put('x', b('X'))
  ])
  expect(seen).toEqual(['A', 'B'])
  expect(group.stats).toEqual({ batches: 2, operations: 3 })
})

test('a failed batch rejects every caller in it, and the next batch is written', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  const { db, group } = groupCommit(raw)
  const real = raw.batch.bind(raw)
  let fail = true
  raw.batch = ((...args: unknown[]) => {
    if (fail) { fail = false; return Promise.reject(new Error('disk full')) }
    return (real as (...a: unknown[]) => unknown)(...args)
  }) as typeof raw.batch
  const results = await Promise.allSettled([db.put('a', b('1')), db.del('b')])
  expect(results.map(r => r.status === 'rejected' ? (r.reason as Error).message : 'ok')).toEqual(['disk full', 'disk full'])
  await db.put('c', b('3'))
  expect((await raw.get('c'))?.toString()).toBe('3')
  expect(await raw.get('a')).toBeUndefined()
  expect(group.stats).toEqual({ batches: 1, operations: 1 })
})

test('clear waits for the writes made before it; options the batch cannot carry go straight to LevelDB', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  const { db, group } = groupCommit(raw)
  const put = db.put('p:1', b('1'))
  const cleared = db.clear({ gte: 'p:', lt: 'p;' })
  await Promise.all([put, cleared])
  expect(await raw.get('p:1')).toBeUndefined()
  await db.put('s', b('synced'), { sync: true } as never)
  expect(group.stats).toEqual({ batches: 1, operations: 1 })
  expect((await raw.get('s'))?.toString()).toBe('synced')
})

test('a get sees the last write made before it, written or not, without a LevelDB read; a refused write is not read back', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  await raw.put('old', b('on disk'))
  const { db } = groupCommit(raw)
  const realGet = raw.get.bind(raw)
  const reads: string[] = []
  raw.get = ((key: string, ...rest: unknown[]) => { reads.push(key); return (realGet as (...a: unknown[]) => unknown)(key, ...rest) }) as typeof raw.get
  const written = db.put('k', b('1'))
  // not in LevelDB yet: the batch is written in a later turn
  expect(await realGet('k')).toBeUndefined()
  expect((await db.get('k'))?.toString()).toBe('1')
  const deleted = db.del('k')
  expect(await db.get('k')).toBeUndefined()
  await Promise.all([written, deleted])
  expect((await db.get('old', { valueEncoding: 'buffer' }))?.toString()).toBe('on disk')
  expect(reads).toEqual(['old'])

  const realBatch = raw.batch.bind(raw)
  raw.batch = (() => Promise.reject(new Error('disk full'))) as unknown as typeof raw.batch
  await expect(db.put('lost', b('x'))).rejects.toThrow('disk full')
  raw.batch = realBatch
  expect(await db.get('lost')).toBeUndefined()
  expect(reads).toEqual(['old', 'lost'])
})

test('a large value is not held for reads once written; small ones are', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  const { db } = groupCommit(raw)
  const realGet = raw.get.bind(raw)
  const reads: string[] = []
  raw.get = ((key: string, ...rest: unknown[]) => { reads.push(key); return (realGet as (...a: unknown[]) => unknown)(key, ...rest) }) as typeof raw.get
  const big = Buffer.alloc(5 * 1024 * 1024, 1)
  const pending = db.put('firmware', big)
  // not written yet: read from what was written
  expect((await db.get('firmware'))?.length).toBe(big.length)
  await Promise.all([pending, db.put('small', b('s'))])
  expect((await db.get('firmware'))?.length).toBe(big.length)
  expect((await db.get('small'))?.toString()).toBe('s')
  expect(reads).toEqual(['firmware'])
})

test('a deletion is kept for reads only until LevelDB has it; a put stays, and so does a newer put of a deleted key', async ({ onTestFinished }) => {
  const raw = await openTempLevel('midge-group-', onTestFinished)
  await raw.put('on-disk', b('old'))
  const { db, group } = groupCommit(raw)

  // a queued message, sent and acknowledged: put, then deleted
  await db.put('msg', b('1'))
  expect(group.lastWrite('msg')?.value?.toString()).toBe('1')
  const deleted = db.del('msg')
  // not written yet: the deletion answers the get, not LevelDB's '1'
  expect(group.lastWrite('msg')).toEqual({ value: undefined, seq: expect.any(Number) as number })
  expect(await db.get('msg')).toBeUndefined()
  await deleted
  expect(group.lastWrite('msg')).toBeUndefined()
  expect(await raw.get('msg')).toBeUndefined()
  expect(await db.get('msg')).toBeUndefined()

  await Promise.all([db.del('on-disk'), db.put('kept', b('2'))])
  expect(group.lastWrite('on-disk')).toBeUndefined()
  expect(await db.get('on-disk')).toBeUndefined()
  expect(group.lastWrite('kept')?.value?.toString()).toBe('2')

  // deleted in one batch, put again while that batch is written: the put is what a get sees, before and after
  const first = db.del('kept')
  await new Promise(resolve => setImmediate(resolve))
  const second = db.put('kept', b('3'))
  await first
  expect(group.lastWrite('kept')?.value?.toString()).toBe('3')
  expect((await db.get('kept'))?.toString()).toBe('3')
  await second
  expect((await raw.get('kept'))?.toString()).toBe('3')
  expect(group.stats.batches).toBe(5)

  // 1,000 messages put and deleted leave nothing behind
  await Promise.all(Array.from({ length: 1000 }, (_, i) => db.put(`q${i}`, b('x')).then(() => db.del(`q${i}`))))
  for (let i = 0; i < 1000; i++) expect(group.lastWrite(`q${i}`)).toBeUndefined()
})
