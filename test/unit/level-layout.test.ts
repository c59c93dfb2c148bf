import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { LEVEL_STORE_VERSION, levelLayoutProblems, outgoingKey, outgoingIdKey, willKey, clientOfKey, clientRange, OUTGOING, msgpack } from '../../src/persistence/level-layout.js'
import { tempDir } from '../helpers/start-broker.js'

const require = createRequire(import.meta.url)
const source = readFileSync(require.resolve('aedes-persistence-level').replace(/persistence\.js$/, 'asyncPersistence.js'), 'utf8')

test('the installed aedes-persistence-level is the pinned one, with the layout Midge reads and writes', () => {
  expect(levelLayoutProblems()).toEqual([])
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
  expect(pkg.dependencies['aedes-persistence-level']).toBe(LEVEL_STORE_VERSION)
})

test('a changed store is named, line by line, and so is another version', () => {
  const moved = source.replace("const OUTGOINGID = 'outgoing-id:'", "const OUTGOINGID = 'outgoing-by-id:'").replace("padStart(16, '0')", "padStart(20, '0')")
  expect(levelLayoutProblems(moved, '10.0.0')).toEqual([
    `version 10.0.0, not ${LEVEL_STORE_VERSION}`,
    "asyncPersistence.js no longer has `const OUTGOINGID = 'outgoing-id:'`",
    "asyncPersistence.js no longer has `return id?.toString().padStart(16, '0')`"
  ])
})

test('the keys Midge builds are the ones the store writes', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-layout-')
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  onTestFinished(async () => { await db.close(); await remove() })
  const { default: levelPersistence } = await import('aedes-persistence-level')
  const store = levelPersistence(db) as unknown as {
    setup (b: unknown): Promise<void>
    outgoingEnqueue (sub: { clientId: string }, p: object): Promise<void>
    outgoingUpdate (c: { id: string }, p: object): Promise<void>
    putWill (c: { id: string }, p: object): Promise<void>
  }
  await store.setup({ id: 'b' })
  const id = 'a:b/ü'
  const packet = { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, retain: false, brokerId: 'B', brokerCounter: 7 }
  await store.outgoingEnqueue({ clientId: id }, packet)
  await store.outgoingUpdate({ id }, { ...packet, messageId: 42 })
  await store.putWill({ id }, { topic: 'w', payload: Buffer.from('') })
  const keys = await db.keys().all()
  expect(keys).toContain(outgoingKey(id, 'B', 7))
  expect(keys).toContain(outgoingIdKey(id, 42))
  expect(keys).toContain(willKey(id))
  expect(clientOfKey(OUTGOING, outgoingKey(id, 'B', 7))).toBe(id)
  expect(await db.keys(clientRange(OUTGOING, id)).all()).toEqual([outgoingKey(id, 'B', 7)])
  expect((msgpack.decode((await db.get(outgoingKey(id, 'B', 7)))!) as { messageId: number }).messageId).toBe(42)
})
