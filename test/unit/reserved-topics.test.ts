import { test, expect } from 'vitest'
import { reservedForPublish, reservedForSubscribe, isAedesBookkeeping, DROP_TOPIC, REFUSED_FILTER, HEALTH_TOPIC, SHARED_PREFIX } from '../../src/mqtt/reserved-topics.js'

test('clients publish (and name wills) anywhere but the broker\'s $SYS/ tree and $MIDGE', () => {
  expect(['$SYS/broker/uptime', '$SYS/x', '$MIDGE', '$MIDGE/dropped', '$MIDGEx'].map(reservedForPublish)).toEqual([true, true, true, true, true])
  expect(['a/b', '$SYSTEM/x', '$SYS', 'x/$SYS/y', '$share/g/t'].map(reservedForPublish)).toEqual([false, false, false, false, false])
})

test('clients subscribe anywhere but $MIDGE (reading $SYS is allowed)', () => {
  expect(['$MIDGE/#', '$MIDGE/share/g/t', '$SYS/#', '#', '$share/g/t'].map(reservedForSubscribe)).toEqual([true, true, false, false, false])
})

test('every internal name is under $MIDGE', () => {
  for (const t of [DROP_TOPIC, REFUSED_FILTER, HEALTH_TOPIC, SHARED_PREFIX]) expect(reservedForSubscribe(t) && reservedForPublish(t)).toBe(true)
})

test('aedes\' bookkeeping topics, and not mosquitto\'s $SYS/broker/ tree', () => {
  expect(['$SYS/abc/heartbeat', '$SYS/node-1-3/new/clients', '$SYS/x/disconnect/clients', '$SYS/x/new/subscribes', '$SYS/x/new/unsubscribes', '$SYS/x/birth'].map(isAedesBookkeeping))
    .toEqual([true, true, true, true, true, true])
  expect(['$SYS/broker/heartbeat', '$SYS/broker/clients/connected', '$SYS/a/b/heartbeat', 'a/heartbeat'].map(isAedesBookkeeping)).toEqual([false, false, false, false])
})
