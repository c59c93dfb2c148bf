/** outgoingUpdate in one batch: the LevelDB contents aedes-persistence-level's own outgoingUpdate leaves. */
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import levelPersistence from 'aedes-persistence-level'
import { updateOutgoingInOneBatch } from '../../src/persistence/outgoing-update.js'
import { tempDir } from '../helpers/start-broker.js'

interface Store {
  outgoingEnqueueCombi (subs: Array<{ clientId: string }>, packet: object): Promise<void>
  outgoingUpdate (client: { id: string }, packet: object): Promise<void>
  outgoingClearMessageId (client: { id: string }, packet: { messageId: number }): Promise<unknown>
}

async function openDb (onTestFinished: (fn: () => Promise<void> | void) => void): Promise<ClassicLevel<string, Buffer>> {
  const { dir, remove } = await tempDir('midge-outgoing-')
  onTestFinished(remove)
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  onTestFinished(async () => { if (db.status === 'open') await db.close() })
  return db
}

async function dump (db: ClassicLevel<string, Buffer>): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  for await (const [k, v] of db.iterator()) out.push([k, v.toString('hex')])
  return out
}

test('enqueue, update (a new id, then another), clear and a missing message: same store contents and answers', async ({ onTestFinished }) => {
  const plainDb = await openDb(onTestFinished)
  const mineDb = await openDb(onTestFinished)
  const plain = levelPersistence(plainDb) as Store
  const mine = updateOutgoingInOneBatch(levelPersistence(mineDb), mineDb) as Store
  const client = { id: 'sub:ü/1' }
  const packet = (counter: number, messageId?: number): object => ({
    cmd: 'publish', brokerId: 'b1', brokerCounter: counter, topic: 't', payload: Buffer.from(`m${counter}`), qos: 1, retain: false, dup: false, messageId
  })
  for (const s of [plain, mine]) {
    await s.outgoingEnqueueCombi([{ clientId: client.id }, { clientId: 'other' }], packet(1))
    await s.outgoingEnqueueCombi([{ clientId: client.id }], packet(2))
    await s.outgoingUpdate(client, packet(1, 5))
    await s.outgoingUpdate(client, packet(2, 6))
    // a resend under a new id drops the old id's key
    await s.outgoingUpdate(client, packet(1, 7))
    await s.outgoingClearMessageId(client, { messageId: 6 })
  }
  expect(await dump(mineDb)).toEqual(await dump(plainDb))
  await expect(mine.outgoingUpdate(client, packet(9, 8))).rejects.toThrow('no such packet')
  await expect(plain.outgoingUpdate(client, packet(9, 8))).rejects.toThrow('no such packet')
  expect(await dump(mineDb)).toEqual(await dump(plainDb))
})
