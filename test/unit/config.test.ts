import { test, expect } from 'vitest'
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, BrokerError } from '../../src/index.js'
import { load, problems } from '../helpers/config.js'

// [lines, expected problems] (mosquitto 16-config-parse-errors style); wording follows mosquitto 2.0.11
test.each([
  ['bogus_option 1', ['Error: Unknown configuration variable "bogus_option". Error found at m.conf:1.']],
  ['listener 1883\nallow_anonymous maybe', ['Error: Invalid allow_anonymous value (maybe). Error found at m.conf:2.']],
  ['max_keepalive abc', ['Error: Invalid max_keepalive value (abc). Error found at m.conf:1.']],
  ['max_keepalive 70000', ['Error: Invalid max_keepalive value (70000). Error found at m.conf:1.']],
  ['listener 99999', ['Error: Invalid port value (99999). Error found at m.conf:1.']],
  ['listener 1883\nprotocol carrier-pigeon', ['Error: Invalid protocol value (carrier-pigeon). Error found at m.conf:2.']],
  ['persistence', ['Error: Empty persistence value in configuration. Error found at m.conf:1.']],
  ['persistent_client_expiration 3 days', ['Error: Invalid persistent_client_expiration duration (3). Error found at m.conf:1.']],
  ['ocsp true', ['Error: Configuration option "ocsp" is not supported by Midge. Error found at m.conf:1.']],
  ['# comment\n\nfoo 1\nlistener 1883\nbar 2', [
    'Error: Unknown configuration variable "foo". Error found at m.conf:3.',
    'Error: Unknown configuration variable "bar". Error found at m.conf:5.'
  ]]
])('%j is refused with %j', (text, expected) => {
  expect(problems(text)).toEqual(expected)
})

test('the two lines of the popular tutorial open every interface with anonymous access', () => {
  const c = load('listener 1883 0.0.0.0\nallow_anonymous true\n')
  expect(c.listeners.map(l => [l.port, l.bindAddress, l.transport, l.auth.allowAnonymous])).toEqual([[1883, '0.0.0.0', 'tcp', true]])
  expect(c.localOnly).toBe(false)
})

test('no listener: local only mode on 127.0.0.1:1883 with anonymous allowed, as mosquitto 2', () => {
  const c = load('')
  expect(c.localOnly).toBe(true)
  expect(c.listeners.map(l => [l.port, l.bindAddress, l.auth.allowAnonymous])).toEqual([[1883, '127.0.0.1', true]])
})

test('a listener without allow_anonymous refuses anonymous clients (mosquitto 2 default)', () => {
  expect(load('listener 1883').listeners[0]!.auth.allowAnonymous).toBe(false)
})

test('-p replaces the local-only port and is ignored (with a warning) when the file has listeners', () => {
  expect(loadConfig({ configText: '', ports: [1999, 2000] }).listeners.map(l => [l.port, l.bindAddress])).toEqual([[1999, '127.0.0.1'], [2000, '127.0.0.1']])
  const c = loadConfig({ configText: 'listener 1883', ports: [1999] })
  expect(c.listeners.map(l => l.port)).toEqual([1883])
  expect(c.warnings.some(w => w.includes('-p is ignored'))).toBe(true)
})

test('listeners: protocol and TLS normalise to a transport; global settings apply to every listener', () => {
  const c = load([
    'allow_anonymous true', 'max_queued_messages 50', 'message_size_limit 1000',
    'listener 1883', 'listener 8080', 'protocol websockets',
    'listener 8883', 'certfile /x/cert.pem', 'keyfile /x/key.pem',
    'listener 8081', 'protocol websockets', 'certfile /x/cert.pem', 'keyfile /x/key.pem'
  ].join('\n'))
  expect(c.listeners.map(l => [l.id, l.transport, l.auth.allowAnonymous])).toEqual([
    ['tcp:1883', 'tcp', true], ['ws:8080', 'ws', true], ['tls:8883', 'tls', true], ['wss:8081', 'wss', true]
  ])
  expect([c.limits.maxQueuedMessages, c.limits.messageSizeLimit]).toEqual([50, 1000])
})

test('per_listener_settings true: auth options belong to the listener they follow', () => {
  const c = load('per_listener_settings true\nlistener 1883\nallow_anonymous true\nlistener 1884\nallow_anonymous false\npassword_file /etc/pw\n')
  expect(c.listeners.map(l => [l.port, l.auth.allowAnonymous, l.auth.passwordFile])).toEqual([[1883, true, undefined], [1884, false, '/etc/pw']])
})

test('per_listener_settings false: allow_anonymous anywhere in the file is global', () => {
  const c = load('listener 1883\nlistener 1884\nallow_anonymous true\n')
  expect(c.listeners.map(l => l.auth.allowAnonymous)).toEqual([true, true])
})

test('TLS options without certfile/keyfile are an error naming the listener', () => {
  expect(problems('listener 8883\ncafile /ca.pem\n')).toEqual(['Error: Listener at m.conf:1: TLS options (cafile, capath, require_certificate, crlfile, ciphers, ...) given without certfile and keyfile.'])
})

test('known-ignored options warn once and do not fail', () => {
  const c = load('user mosquitto\nautosave_interval 60\nlistener 1883\n')
  expect(c.warnings).toEqual([
    'Warning: Option user ignored: Midge does not change user; run it as the user it should run as (systemd DynamicUser, Docker USER). (m.conf:1)',
    'Warning: Option autosave_interval ignored: Midge writes every change through to its store; there is nothing to autosave. (m.conf:2)'
  ])
})

test('include_dir reads *.conf with file:line in errors', ({ onTestFinished }) => {
  const dir = mkdtempSync(join(tmpdir(), 'midge-conf-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'conf.d'))
  writeFileSync(join(dir, 'conf.d', 'b.conf'), 'listener 1884\n')
  writeFileSync(join(dir, 'conf.d', 'a.conf'), 'listener 1883\nallow_anonymous true\n')
  writeFileSync(join(dir, 'conf.d', 'c.txt'), 'ignored nonsense\n')
  writeFileSync(join(dir, 'conf.d', 'd.conf'), '\nnot_an_option x\n')
  writeFileSync(join(dir, 'main.conf'), `include_dir ${join(dir, 'conf.d')}\n`)
  try {
    loadConfig({ configFile: join(dir, 'main.conf') })
    throw new Error('expected an error')
  } catch (err) {
    expect((err as BrokerError).problems).toEqual([`Error: Unknown configuration variable "not_an_option". Error found at ${join(dir, 'conf.d', 'd.conf')}:2.`])
  }
  writeFileSync(join(dir, 'conf.d', 'd.conf'), 'max_inflight_messages 5\n')
  const c = loadConfig({ configFile: join(dir, 'main.conf') })
  expect(c.listeners.map(l => l.port)).toEqual([1883, 1884])
  expect(c.limits.maxInflightMessages).toBe(5)
})

test('log_type and log_dest accumulate like mosquitto; -v turns everything on', () => {
  const c = load('log_type error\nlog_type subscribe\nlog_dest stdout\nlog_dest file /tmp/midge.log\n')
  expect(c.log.types).toEqual(['error', 'subscribe'])
  expect(c.log.dest).toEqual([{ kind: 'stdout' }, { kind: 'file', path: '/tmp/midge.log' }])
  expect(loadConfig({ configText: '', verbose: true }).log.types).toContain('debug')
})

test('the shipped config files load without errors', () => {
  for (const f of ['config/midge.conf', 'mosquitto-compat.conf']) {
    expect(() => loadConfig({ configFile: f })).not.toThrow()
  }
})

test('the config object is frozen', () => {
  const c = load('listener 1883')
  expect(Object.isFrozen(c) && Object.isFrozen(c.listeners[0]) && Object.isFrozen(c.limits)).toBe(true)
})

test('a trailing # comment after a value is ignored; the first value may itself start with #', () => {
  const c = load('listener 1883 # plain MQTT\nmax_queued_messages 50   # per client\npid_file #odd-name\n')
  expect([c.listeners[0]!.port, c.listeners[0]!.bindAddress, c.limits.maxQueuedMessages, c.pidFile?.endsWith('#odd-name')]).toEqual([1883, undefined, 50, true])
  expect(c.warnings).toEqual([])
})
