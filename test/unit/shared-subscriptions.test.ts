/** The `$share/GROUP/FILTER` grammar [MQTT-4.8.2-1] [MQTT-4.8.2-2] and the names aedes holds for shared subscriptions. */
import { test, expect } from 'vitest'
import { parseShare, displayFilter, matchingFilter, INTERNAL_PREFIX } from '../../src/broker/shared-subscriptions.js'

test.each([
  ['$share/g/f', { group: 'g', filter: 'f' }],
  ['$share/g/a/+/#', { group: 'g', filter: 'a/+/#' }],
  ['$share/group-1/$SYS/#', { group: 'group-1', filter: '$SYS/#' }],
  ['$share/g//', { group: 'g', filter: '/' }],
  ['$share', { invalid: 'protocol' }],
  ['$share/', { invalid: 'protocol' }],
  ['$share/g', { invalid: 'protocol' }],
  ['$share//f', { invalid: 'protocol' }],
  ['$share/g/', { invalid: 'protocol' }],
  ['$share/g+/f', { invalid: 'malformed' }],
  ['$share/#', { invalid: 'malformed' }],
  ['$share/a#b/f', { invalid: 'malformed' }],
  ['$shared/g/f', undefined],
  ['share/g/f', undefined],
  ['a/$share/g/f', undefined]
])('parseShare(%s)', (topic, parsed) => {
  expect(parseShare(topic)).toEqual(parsed)
})

test('the name aedes holds reads back as the filter the client wrote, and matches by its filter part', () => {
  const name = `${INTERNAL_PREFIX}g/a/+`
  expect(displayFilter(name)).toBe('$share/g/a/+')
  expect(matchingFilter(name)).toBe('a/+')
  expect(displayFilter('a/+')).toBe('a/+')
  expect(matchingFilter('$SYS/#')).toBe('$SYS/#')
})
