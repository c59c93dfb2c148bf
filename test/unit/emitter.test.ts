import { test, expect } from 'vitest'
import mqemitter from 'mqemitter'
import { TopicEmitter, type Listener } from '../../src/broker/emitter.js'

const FILTERS = ['#', '+', 'a', 'a/#', 'a/+', 'a/b', 'a/+/c', '+/b', '+/+', 'a/b/#', '/#', '+/', 'a//c', 'a/+/#', '$SYS/#', '$SYS/+/x', 'b/#', '+/b/+', 'a/b/c/d']
const TOPICS = ['a', 'a/b', 'a/b/c', 'a/b/c/d', 'a/', '/', '/b', 'a//c', 'b', 'b/b/b', '$SYS/x', '$SYS/1/x', 'x/b', 'x/b/y', 'a/x/c', '']

/** Which filters qlobber (through mqemitter, configured as aedes configures it) matches for a topic. */
function mqemitterMatches (topic: string): string[] {
  const mq = mqemitter({ matchEmptyLevels: true }) as unknown as { _matcher: { match: (t: string) => string[], add: (f: string, v: string) => void } }
  for (const f of FILTERS) mq._matcher.add(f, f)
  return mq._matcher.match(topic).slice().sort()
}

test('matches exactly the filters qlobber matches, for every filter/topic pair', () => {
  const e = new TopicEmitter()
  const named = new Map<Listener, string>()
  for (const f of FILTERS) {
    const l: Listener = (_m, done) => done()
    named.set(l, f)
    e.on(f, l)
  }
  for (const t of TOPICS) {
    const ours = e.match(t).map(l => named.get(l)!).sort()
    expect({ topic: t, filters: ours }).toEqual({ topic: t, filters: mqemitterMatches(t) })
  }
})

test('# matches its parent level and + matches an empty level [MQTT-4.7.1-2] [MQTT-4.7.1-3]', () => {
  const e = new TopicEmitter()
  const hits: string[] = []
  e.on('sport/tennis/#', (m, done) => { hits.push(`#:${m.topic}`); done() })
  e.on('sport/+', (m, done) => { hits.push(`+:${m.topic}`); done() })
  for (const topic of ['sport/tennis', 'sport/tennis/player1', 'sport/', 'sport', 'sports/tennis']) e.emit({ topic })
  expect(hits).toEqual(['#:sport/tennis', '+:sport/tennis', '#:sport/tennis/player1', '+:sport/'])
})

test('delivers in publish order and calls back once all listeners are done', async () => {
  const e = new TopicEmitter()
  const got: string[] = []
  const pending: Array<() => void> = []
  e.on('t/#', (m, done) => { got.push(`1:${String(m.n)}`); pending.push(() => done()) })
  e.on('t/+', (m, done) => { got.push(`2:${String(m.n)}`); setImmediate(done) })
  const completed: number[] = []
  for (let n = 0; n < 3; n++) e.emit({ topic: 't/x', n }, () => completed.push(n))
  expect(got).toEqual(['1:0', '2:0', '1:1', '2:1', '1:2', '2:2'])
  await new Promise(resolve => setImmediate(resolve))
  expect(completed).toEqual([]) // the first listener has not finished any
  for (const p of pending) p()
  expect(completed).toEqual([0, 1, 2])
})

test('the callback gets the first error and is called only once', () => {
  const e = new TopicEmitter()
  e.on('a', (_m, done) => done(new Error('boom')))
  e.on('a', (_m, done) => done())
  const calls: Array<string | undefined> = []
  e.emit({ topic: 'a' }, err => calls.push(err?.message))
  expect(calls).toEqual(['boom'])
})

test('no subscriber: the callback runs synchronously', () => {
  const e = new TopicEmitter()
  let called = 0
  e.emit({ topic: 'nobody/listens' }, () => called++)
  expect(called).toBe(1)
})

test('a slow subscriber holding 100 messages, then 50,000 emits nobody listens to: no queue, no stack overflow', () => {
  const e = new TopicEmitter()
  const held: Array<() => void> = []
  e.on('slow', (_m, done) => { held.push(() => done()) })
  let completed = 0
  for (let i = 0; i < 100; i++) e.emit({ topic: 'slow' }, () => { completed++ })
  for (let i = 0; i < 50_000; i++) e.emit({ topic: 'nobody/listens' }, () => { completed++ })
  expect(completed).toBe(50_000) // not queued behind the slow ones
  for (const release of held) release()
  expect(completed).toBe(50_100)
})

test('mqemitter with aedes\' concurrency (100) overflows the stack on the same load: the reason for TopicEmitter', () => {
  const mq = mqemitter({ concurrency: 100, matchEmptyLevels: true })
  const held: Array<() => void> = []
  // 100 messages stay in flight (a slow subscriber), the rest queue up behind them
  mq.on('slow', (_m: unknown, done: () => void) => { held.push(done) })
  for (let i = 0; i < 100; i++) mq.emit({ topic: 'slow' })
  for (let i = 0; i < 50_000; i++) mq.emit({ topic: 'nobody/listens' })
  expect(() => held[0]!()).toThrow(RangeError) // Maximum call stack size exceeded
})

test('removeListener takes effect on the next turn and removes one occurrence; removeAllListeners removes all', async () => {
  const e = new TopicEmitter()
  let n = 0
  const l: Listener = (_m, done) => { n++; done() }
  e.on('a/+', l)
  e.on('a/+', l)
  e.emit({ topic: 'a/b' })
  expect(n).toBe(2)
  await new Promise<void>(resolve => e.removeListener('a/+', l, resolve))
  e.emit({ topic: 'a/b' })
  expect(n).toBe(3)
  e.removeAllListeners('a/+')
  e.emit({ topic: 'a/b' })
  expect(n).toBe(3)
  expect(e.match('a/b')).toEqual([])
})

test('a removed filter leaves no node behind', async () => {
  const e = new TopicEmitter()
  const l: Listener = (_m, done) => done()
  for (let i = 0; i < 1000; i++) e.on(`dev/${i}/+/#`, l)
  for (let i = 0; i < 1000; i++) await new Promise<void>(resolve => e.removeListener(`dev/${i}/+/#`, l, resolve))
  const root = (e as unknown as { root: { children: Map<string, unknown>, isEmpty: () => boolean } }).root
  expect(root.isEmpty()).toBe(true)
})

test('the match cache is invalidated by subscribe and unsubscribe', async () => {
  const e = new TopicEmitter()
  const a: Listener = (_m, done) => done()
  const b: Listener = (_m, done) => done()
  e.on('x/#', a)
  expect(e.match('x/y')).toEqual([a])
  e.on('x/y', b)
  expect(e.match('x/y')).toEqual([a, b])
  await new Promise<void>(resolve => e.removeListener('x/#', a, resolve))
  expect(e.match('x/y')).toEqual([b])
})

test('after close, emit reports an error as mqemitter does', async () => {
  const e = new TopicEmitter()
  await new Promise<void>(resolve => e.close(resolve))
  const errs: Array<string | undefined> = []
  e.emit({ topic: 'a' }, err => errs.push(err?.message))
  expect(errs).toEqual(['mqemitter is closed'])
})
