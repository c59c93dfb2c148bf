import { test, expect } from 'vitest'
import { topicMatches } from '../../src/mqtt/topic-match.js'

test.each([
  ['a/b', 'a/b', true], ['a/b', 'a/c', false], ['a/b', 'a/b/c', false], ['a/b/c', 'a/b', false],
  ['a/+', 'a/b', true], ['a/+', 'a/', true], ['a/+', 'a/b/c', false], ['+/+', 'a/b', true], ['+', 'a', true], ['+', 'a/b', false],
  ['a/#', 'a', true], ['a/#', 'a/b', true], ['a/#', 'a/b/c', true], ['a/#', 'ab', false], ['#', 'a/b', true], ['#', '', true],
  ['a/+/c', 'a/b/c', true], ['a/+/c', 'a//c', true], ['a/+/c', 'a/b/d', false], ['+/b/#', 'x/b', true],
  ['#', '$SYS/x', false], ['+/x', '$SYS/x', false], ['$SYS/#', '$SYS/x', true], ['$SYS/+', '$SYS/x', true],
  ['/+', '/a', true], ['+/', 'a/', true], ['a/b/', 'a/b', false]
])('%s matches %s: %s', (filter, topic, expected) => {
  expect(topicMatches(filter, topic)).toBe(expected)
})
