/** Pure parts of $SYS, /metrics and the CSR page. */
import { test, expect } from 'vitest'
import { smoothLoad } from '../../src/sys/sys-publisher.js'
import { topicMatches } from '../../src/mqtt/topic-match.js'
import { csrFromBody, CsrError } from '../../src/http/csr.js'

test('load averages smooth like mosquitto 2.0.11: one connection in a 2 s interval', () => {
  // captured from Debian's mosquitto (sys_interval 1, it updates every 2 s): load/connections/{1,5,15}min after the
  // first client connected were 0.98, 0.20 and 0.07
  const rate = 1 * 60 / 2
  expect([60, 300, 900].map(w => smoothLoad(0, rate, 2, w).toFixed(2))).toEqual(['0.98', '0.20', '0.07'])
  // and decay towards 0 when nothing happens
  expect(smoothLoad(0.98, 0, 2, 60).toFixed(2)).toBe('0.95')
})

test('topic filter matching for $ filters', () => {
  expect(topicMatches('$SYS/#', '$SYS/broker/uptime')).toBe(true)
  expect(topicMatches('$SYS/broker/+', '$SYS/broker/uptime')).toBe(true)
  expect(topicMatches('$SYS/broker/+', '$SYS/broker/load/bytes')).toBe(false)
  expect(topicMatches('$SYS/broker/uptime', '$SYS/broker/uptime')).toBe(true)
  expect(topicMatches('$SYS/+/uptime/#', '$SYS/broker/uptime')).toBe(true)
  expect(topicMatches('$SYS/broker', '$SYS/broker/uptime')).toBe(false)
  expect(topicMatches('$MIDGE/x', '$SYS/broker/uptime')).toBe(false)
})

test('the CSR comes from a raw PEM body or the form field csr', () => {
  const pem = '-----BEGIN CERTIFICATE REQUEST-----\nabc\n-----END CERTIFICATE REQUEST-----'
  expect(csrFromBody(`${pem}\n`, 'application/x-www-form-urlencoded')).toBe(pem) // curl --data-binary
  expect(csrFromBody(new URLSearchParams({ csr: pem }).toString(), 'application/x-www-form-urlencoded')).toBe(pem)
  expect(csrFromBody(pem, 'text/plain')).toBe(pem)
  expect(() => csrFromBody('csr=', 'application/x-www-form-urlencoded')).toThrow(CsrError)
  expect(() => csrFromBody('hello', undefined)).toThrow('no CSR in the request')
})
