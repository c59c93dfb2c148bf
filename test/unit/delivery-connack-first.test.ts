/**
 * CONNACK first (src/broker/delivery/connack-first.ts) against real aedes over in-memory stream pairs: a message
 * routed to a returning persistent session after aedes restored its subscriptions but before it wrote the CONNACK
 * goes out after the CONNACK [MQTT-3.2.0-1].
 */
import { once } from 'node:events'
import { test, expect } from 'vitest'
import { startPairBroker, watchDeliveries, type PairBroker } from '../helpers/stream-pair.js'

interface WillStore { delWill (client: { id: string }): Promise<unknown> }

/**
 * A pair broker whose store runs `gap.during` (once) inside the old will's deletion: aedes restores a returning
 * session's subscriptions, then deletes its will, then writes the CONNACK, so what runs there is routed before it.
 */
async function brokerWithGap (): Promise<{ b: PairBroker, gap: { during?: () => Promise<void> } }> {
  const gap: { during?: () => Promise<void> } = {}
  const b = await startPairBroker({}, (persistence) => {
    const store = persistence as WillStore
    const delWill = store.delWill.bind(store)
    store.delWill = async (client) => {
      const during = gap.during
      delete gap.during
      if (during !== undefined) await during()
      return delWill(client)
    }
    return store
  })
  return { b, gap }
}

test('a returning session: the CONNACK is written before a PUBLISH routed while the session was being restored', async ({ onTestFinished }) => {
  // aedes restores the subscriptions, then deletes the old will, then writes the CONNACK: a message published
  // while the will is deleted reaches the restored subscription before the CONNACK
  const { b, gap } = await brokerWithGap()
  onTestFinished(() => b.close())

  const first = b.pair()
  await first.connect({ clientId: 'back', clean: false })
  expect(await first.subscribe('s/#', 1)).toEqual([1])
  const gone = once(b.aedes, 'clientDisconnect')
  await first.end()
  await gone

  gap.during = async () => {
    const delivered = await watchDeliveries(b.aedes, 's/#', 1)
    b.aedes.publish({ cmd: 'publish', topic: 's/1', payload: Buffer.from('early'), qos: 1, retain: false, dup: false }, () => {})
    await delivered.done
  }
  const again = b.pair()
  const connack = await again.connect({ clientId: 'back', clean: false })
  expect(gap.during).toBeUndefined()
  expect([connack.returnCode, connack.sessionPresent]).toEqual([0, true])
  const [publish] = await again.publishes(1)
  expect([publish!.topic, publish!.payload.toString(), publish!.qos]).toEqual(['s/1', 'early', 1])
  // the first bytes on the wire: CONNACK, session present, accepted
  expect([...Buffer.concat(again.received).subarray(0, 4)]).toEqual([0x20, 0x02, 0x01, 0x00])
  expect(again.log.map(p => p.cmd)).toEqual(['connack', 'publish', 'pingresp'])
})

test('a delivery held for the CONNACK of a client that closes first is not sent, and its publisher goes on', async ({ onTestFinished }) => {
  const { b, gap } = await brokerWithGap()
  onTestFinished(() => b.close())
  const first = b.pair()
  await first.connect({ clientId: 'gone', clean: false })
  expect(await first.subscribe('s/#', 0)).toEqual([0])
  const left = once(b.aedes, 'clientDisconnect')
  await first.end()
  await left

  const again = b.pair()
  let published: Promise<void> | undefined
  gap.during = async () => {
    const delivered = await watchDeliveries(b.aedes, 's/#', 1)
    published = new Promise(resolve => b.aedes.publish({ cmd: 'publish', topic: 's/1', payload: Buffer.from('held'), qos: 0, retain: false, dup: false }, () => resolve()))
    await delivered.done
    // the client goes before its CONNACK
    await again.end()
  }
  again.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'gone', keepalive: 0 })
  await once(again.conn, 'close')
  await published
  expect(again.log.filter(p => p.cmd === 'publish')).toEqual([])
})
