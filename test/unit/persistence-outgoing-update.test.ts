/** The outgoing queue's writes (one encoding, one batch): the LevelDB contents and answers aedes-persistence-level's own leave. */
import { test, expect } from 'vitest'
import levelPersistence from 'aedes-persistence-level'
import { replaceOutgoingQueue } from '../../src/persistence/outgoing-queue.js'
import { openTempLevel, dumpLevel, storePair } from '../helpers/level-db.js'

interface Store {
  outgoingEnqueueCombi (subs: Array<{ clientId: string }>, packet: object): Promise<void>
  outgoingUpdate (client: { id: string }, packet: object): Promise<void>
  outgoingClearMessageId (client: { id: string }, packet: { messageId: number }): Promise<unknown>
}

test('enqueue, update (a new id, then another), clear and a missing message: same store contents and answers', async ({ onTestFinished }) => {
  const plainDb = await openTempLevel('midge-outgoing-', onTestFinished)
  const mineDb = await openTempLevel('midge-outgoing-', onTestFinished)
  const plain = levelPersistence(plainDb) as Store
  const mine = replaceOutgoingQueue(levelPersistence(mineDb), mineDb) as Store
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
  expect(await dumpLevel(mineDb)).toEqual(await dumpLevel(plainDb))
  await expect(mine.outgoingUpdate(client, packet(9, 8))).rejects.toThrow('no such packet')
  await expect(plain.outgoingUpdate(client, packet(9, 8))).rejects.toThrow('no such packet')
  expect(await dumpLevel(mineDb)).toEqual(await dumpLevel(plainDb))
})

test('through the group commit: the answers are the store\'s, and nothing just written is decoded again', async ({ onTestFinished }) => {
  const { plainDb, plain: plainStore, rawDb, mineDb, mineStore, group, codec } = await storePair('midge-outgoing-', onTestFinished)
  const plain = plainStore as Store
  const kept: string[] = []
  const peek = (key: string): { value: Buffer | undefined } | undefined => {
    const r = group.lastWrite(key)
    if (r !== undefined) kept.push(key)
    return r
  }
  const mine = replaceOutgoingQueue(mineStore, mineDb, codec, peek) as Store
  const client = { id: 'sub' }
  const v5 = {
    cmd: 'publish',
    brokerId: 'b1',
    brokerCounter: 1,
    topic: 't/ü',
    payload: Buffer.from('m1'),
    qos: 1,
    retain: false,
    dup: false,
    properties: { userProperties: { a: ['x', 'y'], b: 'z' }, correlationData: Buffer.from([0, 255]), contentType: 'c' },
    messageExpiry: 1_900_000_000_000
  }
  const answers: unknown[][] = [[], []]
  for (const [i, s] of [plain, mine].entries()) {
    await s.outgoingEnqueueCombi([{ clientId: client.id }, { clientId: 'other' }], v5)
    await s.outgoingEnqueueCombi([{ clientId: client.id }], { ...v5, brokerCounter: 2, properties: undefined })
    // aedes' QoSPacket carries its write callback: msgpack writes a function as nil
    await s.outgoingUpdate(client, { ...v5, messageId: 5, writeCallback: () => {} })
    await s.outgoingUpdate(client, { ...v5, brokerCounter: 2, messageId: 6 })
    await s.outgoingUpdate(client, { ...v5, messageId: 7 })
    answers[i]!.push(await s.outgoingClearMessageId(client, { messageId: 7 }))
    answers[i]!.push(await s.outgoingClearMessageId(client, { messageId: 6 }))
    answers[i]!.push(await s.outgoingClearMessageId(client, { messageId: 5 }))
    answers[i]!.push(await s.outgoingEnqueueCombi([], v5))
  }
  expect(answers[1]).toEqual(answers[0])
  expect((answers[1]![0] as { messageId: number }).messageId).toBe(7)
  await rawDb.close()
  await plainDb.close()
  await rawDb.open()
  await plainDb.open()
  expect(await dumpLevel(rawDb)).toEqual(await dumpLevel(plainDb))
  // every read above (three updates, two clears: id 5 was dropped when its message went out again as 7) found the bytes just written
  expect(codec.stats).toEqual({ decoded: 0, reused: 5 })
  // and each of those five was answered by the group commit at once, not through a get
  expect(kept).toEqual([
    'outgoing:sub:b1:0000000000000001', 'outgoing:sub:b1:0000000000000002', 'outgoing:sub:b1:0000000000000001',
    'outgoing-id:sub:0000000000000007', 'outgoing-id:sub:0000000000000006'
  ])
})

test('QoS 2: a PUBREL takes its message\'s place in one batch, with the store\'s keys and values; a PUBREL for no message is refused', async ({ onTestFinished }) => {
  const { plainDb, plain: plainStore, rawDb, mineDb, mineStore, group, codec } = await storePair('midge-outgoing-', onTestFinished)
  const plain = plainStore as Store
  const mine = replaceOutgoingQueue(mineStore, mineDb, codec, key => group.lastWrite(key)) as Store
  const client = { id: 'sub/2' }
  const message = { cmd: 'publish', brokerId: 'b1', brokerCounter: 4, topic: 't', payload: Buffer.from('q2'), qos: 2, retain: false, dup: false }
  const pubrels: object[] = []
  const answers: unknown[][] = [[], []]
  for (const s of [plain, mine]) {
    await s.outgoingEnqueueCombi([{ clientId: client.id }], message)
    await s.outgoingUpdate(client, { ...message, messageId: 9 })
    // aedes' PubRel, as pubrec.js builds it
    const pubrel = { cmd: 'pubrel', messageId: 9, reasonCode: 0 }
    await s.outgoingUpdate(client, pubrel)
    pubrels.push(pubrel)
    await expect(s.outgoingUpdate(client, { cmd: 'pubrel', messageId: 10, reasonCode: 0 })).rejects.toThrow('no such packet')
  }
  await group.barrier()
  expect(await dumpLevel(rawDb)).toEqual(await dumpLevel(plainDb))
  for (const [i, s] of [plain, mine].entries()) answers[i]!.push(await s.outgoingClearMessageId(client, { messageId: 9 }))
  expect(pubrels[1]).toEqual(pubrels[0])
  expect(pubrels[1]).toMatchObject({ brokerId: 'b1', brokerCounter: 4 })
  expect(answers[1]).toEqual(answers[0])
  await group.barrier()
  expect(await dumpLevel(rawDb)).toEqual(await dumpLevel(plainDb))
  // the message's update read its queue entry, the PUBREL read the message by id then its queue entry, the clear the PUBREL
  expect(codec.stats).toEqual({ decoded: 0, reused: 4 })
})
