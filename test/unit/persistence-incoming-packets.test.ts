/** QoS 2 received messages written by Midge: the store's keys and values, looked up without decoding them again. */
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import levelPersistence from 'aedes-persistence-level'
import { replaceIncomingPackets } from '../../src/persistence/incoming-packets.js'
import { groupCommit } from '../../src/persistence/group-commit.js'
import { PacketCodec } from '../../src/persistence/packet-codec.js'
import { tempDir } from '../helpers/start-broker.js'

interface Store {
  incomingStorePacket (client: { id: string }, packet: object): Promise<void>
  incomingGetPacket (client: { id: string }, packet: { messageId: number }): Promise<unknown>
  incomingDelPacket (client: { id: string }, packet: { messageId: number }): Promise<void>
}

async function openDb (onTestFinished: (fn: () => Promise<void> | void) => void): Promise<ClassicLevel<string, Buffer>> {
  const { dir, remove } = await tempDir('midge-incoming-')
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

test('stored, looked up, missing and deleted: the store\'s contents and answers, nothing decoded', async ({ onTestFinished }) => {
  const plainDb = await openDb(onTestFinished)
  const rawDb = await openDb(onTestFinished)
  const { db: mineDb, group } = groupCommit(rawDb)
  const codec = new PacketCodec()
  const plain = levelPersistence(plainDb) as Store
  const mine = replaceIncomingPackets(levelPersistence(mineDb), mineDb, codec) as Store
  const client = { id: 'pub:ü' }
  // an mqtt-packet PUBLISH as aedes hands it over, v5 properties included
  const publish = (messageId: number): object => ({
    cmd: 'publish',
    retain: false,
    qos: 2,
    dup: false,
    length: 20,
    topic: 'a/b',
    payload: Buffer.from(`p${messageId}`),
    messageId,
    properties: { userProperties: { k: 'v' } },
    brokerId: 'b1',
    brokerCounter: messageId
  })
  const answers: unknown[][] = [[], []]
  for (const [i, s] of [plain, mine].entries()) {
    await s.incomingStorePacket(client, publish(1))
    await s.incomingStorePacket(client, publish(65535))
    answers[i]!.push(await s.incomingGetPacket(client, { messageId: 65535 }))
    answers[i]!.push(await s.incomingGetPacket(client, { messageId: 2 }).catch((err: Error) => err.message))
    await s.incomingDelPacket(client, { messageId: 65535 })
  }
  await group.barrier()
  expect(answers[1]).toEqual(answers[0])
  expect(answers[1]![1]).toBe('no such packet')
  expect(await dump(rawDb)).toEqual(await dump(plainDb))
  expect(codec.stats).toEqual({ decoded: 0, reused: 1 })
})
