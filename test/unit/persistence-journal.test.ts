/** The QoS 1 journal on its own: what a crash leaves behind is read back in order, byte for byte. */
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import pino from 'pino'
import { PublishJournal, encode, decode } from '../../src/persistence/journal.js'
import { tempDir } from '../helpers/start-broker.js'

test('entries not completed are read back in order with topic, payload, flags and broker position; the sequence continues', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-journal-')
  onTestFinished(remove)
  const log = pino({ level: 'silent' })
  let db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  const j = new PublishJournal(db, log)
  const packets = [
    { topic: 'a/1', payload: Buffer.from([0, 1, 2, 255]), qos: 1 as const, retain: false, brokerId: 'midge-0000000001-aa', brokerCounter: 7 },
    { topic: 'a/ü', payload: Buffer.alloc(0), qos: 1 as const, retain: true, brokerId: 'midge-0000000001-aa', brokerCounter: 8 },
    { topic: 'a/3', payload: Buffer.from('three'), qos: 1 as const, retain: false, brokerId: 'midge-0000000001-aa', brokerCounter: 9 }
  ]
  // all three written in one batch: every record() resolves only once it is on disk
  await Promise.all(packets.map(p => j.record(p)))
  expect(j.written).toBe(3)
  j.complete(packets[1]!)
  j.complete(packets[1]!) // twice: harmless
  await j.flush()
  await db.close()

  db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  onTestFinished(() => db.close())
  const again = new PublishJournal(db, log)
  const left = await again.pending()
  expect(left.map(({ key: _k, ...e }) => e)).toEqual([packets[0], packets[2]])
  // new entries sort after the old ones
  const next = { topic: 'b', payload: Buffer.from('x'), qos: 1 as const, retain: false, brokerId: 'midge-0000000002-bb', brokerCounter: 1 }
  await again.record(next)
  const all = await new PublishJournal(db, log).pending()
  expect(all.map(e => e.topic)).toEqual(['a/1', 'a/3', 'b'])
  expect(all[2]!.key > all[1]!.key).toBe(true)
})

test('an entry is a 4-byte head length, the JSON head, then the payload; binary properties as base64', () => {
  const layout = (head: object, payload: Buffer): string => {
    const h = Buffer.from(JSON.stringify(head))
    const len = Buffer.alloc(4)
    len.writeUInt32BE(h.length)
    return Buffer.concat([len, h, payload]).toString('hex')
  }
  const plain = { topic: 'a/ü', payload: Buffer.from([0, 1, 255]), qos: 1 as const, retain: true, brokerId: 'b', brokerCounter: 7 }
  expect(encode(plain).toString('hex')).toBe(layout({ t: 'a/ü', q: 1, r: true, b: 'b', c: 7 }, plain.payload))
  const v5 = { ...plain, payload: Buffer.alloc(0), properties: { correlationData: Buffer.from([9, 8]), userProperties: { k: ['v', 'w'] } }, messageExpiry: 1_900_000_000_000 }
  expect(encode(v5).toString('hex')).toBe(layout({
    t: 'a/ü', q: 1, r: true, b: 'b', c: 7, p: { correlationData: { $b: Buffer.from([9, 8]).toString('base64') }, userProperties: { k: ['v', 'w'] } }, x: 1_900_000_000_000
  }, Buffer.alloc(0)))
  const { key: _k, ...back } = decode('k', encode(v5))
  expect(back).toEqual(v5)
})
