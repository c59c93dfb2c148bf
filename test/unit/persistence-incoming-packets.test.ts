/** QoS 2 received messages written by Midge: the store's keys and values, looked up without decoding them again. */
import { test, expect } from 'vitest'
import { replaceIncomingPackets } from '../../src/persistence/incoming-packets.js'
import { dumpLevel, storePair } from '../helpers/level-db.js'

interface Store {
  incomingStorePacket (client: { id: string }, packet: object): Promise<void>
  incomingGetPacket (client: { id: string }, packet: { messageId: number }): Promise<unknown>
  incomingDelPacket (client: { id: string }, packet: { messageId: number }): Promise<void>
}

test('stored, looked up, missing and deleted: the store\'s contents and answers, nothing decoded', async ({ onTestFinished }) => {
  const { plainDb, plain: plainStore, rawDb, mineDb, mineStore, group, codec } = await storePair('midge-incoming-', onTestFinished)
  const plain = plainStore as Store
  const mine = replaceIncomingPackets(mineStore, mineDb, codec) as Store
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
  expect(await dumpLevel(rawDb)).toEqual(await dumpLevel(plainDb))
  expect(codec.stats).toEqual({ decoded: 0, reused: 1 })
})
