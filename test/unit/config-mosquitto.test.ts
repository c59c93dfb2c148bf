/**
 * mosquitto 2.0's reading rules and option spellings, each checked against Debian's mosquitto 2.0.11 first
 * (`mosquitto -c FILE`: its error text is quoted where Midge matches it).
 */
import { test, expect } from 'vitest'
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/index.js'
import { includeDirOrder } from '../../src/config/mosquitto-conf.js'
import { load, problems } from '../helpers/config.js'

test('a path value is the rest of the line, spaces included (mosquitto: "a b" opens the file "a b")', () => {
  const c = load('listener 1883\npassword_file /etc/my conf/pw file  \nacl_file   /etc/acl\n')
  expect([c.auth.passwordFile, c.auth.aclFile]).toEqual(['/etc/my conf/pw file', '/etc/acl'])
})

test('a # after a path is part of it, as in mosquitto, and says so in a warning', () => {
  const c = load('listener 1883\npassword_file /etc/pw # users\n')
  expect(c.auth.passwordFile).toBe('/etc/pw # users')
  expect(c.warnings).toEqual(['Warning: The password_file value is the rest of the line, "#" included (as in mosquitto): "/etc/pw # users". Put comments on their own line. (m.conf:2)'])
})

test.each([
  ['password_file /a\npassword_file /b\nlistener 1883', 'Error: Duplicate password_file value in configuration. Error found at m.conf:2.'],
  ['acl_file /a\nlistener 1883\nacl_file /b', 'Error: Duplicate acl_file value in configuration. Error found at m.conf:3.'],
  ['listener 8883\ncertfile /a\ncertfile /b\nkeyfile /k', 'Error: Duplicate certfile value in configuration. Error found at m.conf:3.'],
  ['pid_file /a\npid_file /b', 'Error: Duplicate pid_file value in configuration. Error found at m.conf:2.'],
  ['persistence_location /a\npersistence_location /b', 'Error: Duplicate persistence_location value in configuration. Error found at m.conf:2.']
])('a string option given twice in one scope is an error: %j', (text, expected) => {
  expect(problems(text)).toEqual([expected])
})

test('per_listener_settings true: the same password_file key on two listeners is no duplicate', () => {
  const c = load('per_listener_settings true\nlistener 1883\npassword_file /a\nlistener 1884\npassword_file /b\n')
  expect(c.listeners.map(l => l.auth.passwordFile)).toEqual(['/a', '/b'])
})

test('include_dir order is mosquitto\'s: case-insensitive, upper case first on a tie, "_" after letters', () => {
  expect(['b.conf', '_x.conf', 'Z.conf', 'a.conf', 'B.conf', 'A.conf'].sort(includeDirOrder))
    .toEqual(['A.conf', 'a.conf', 'B.conf', 'b.conf', 'Z.conf', '_x.conf'])
})

test('include_dir: relative to the working directory, read from the main file only', ({ onTestFinished }) => {
  const dir = mkdtempSync(join(tmpdir(), 'midge-conf-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'd'))
  mkdirSync(join(dir, 'nested'))
  writeFileSync(join(dir, 'd', 'B.conf'), 'listener 1002\n')
  writeFileSync(join(dir, 'd', 'a.conf'), 'listener 1001\ninclude_dir ' + join(dir, 'nested') + '\n')
  writeFileSync(join(dir, 'nested', 'x.conf'), 'listener 1003\n')
  writeFileSync(join(dir, 'main.conf'), 'allow_anonymous true\ninclude_dir d\n')
  const cwd = process.cwd()
  process.chdir(dir)
  try {
    const c = loadConfig({ configFile: 'main.conf' })
    expect(c.listeners.map(l => l.port)).toEqual([1001, 1002])
    expect(c.warnings).toEqual([`Warning: include_dir is only read from the main config file (as in mosquitto); this one is ignored. (${join(dir, 'd', 'a.conf')}:2)`])
  } finally {
    process.chdir(cwd)
  }
  // from elsewhere, the same relative directory is not found (mosquitto: "Unable to open include_dir 'd'.")
  expect(() => loadConfig({ configFile: join(dir, 'main.conf') })).toThrow(`Unable to open include_dir 'd'. Error found at ${join(dir, 'main.conf')}:2.`)
})

test('a listener option before the first listener line opens mosquitto\'s default listener on 1883, with a warning', () => {
  const c = load('max_connections 5\nlistener 18830 127.0.0.1\nallow_anonymous true\n')
  expect(c.listeners.map(l => [l.port, l.bindAddress, l.maxConnections])).toEqual([[1883, undefined, 5], [18830, '127.0.0.1', -1]])
  expect(c.warnings).toEqual(['Warning: max_connections before the first listener line: as mosquitto does, Midge opens the default listener on port 1883 on every interface with these settings. Move them below the listener they are meant for if that is not what you want. (m.conf:1)'])
})

test('protocol mqtt before the first listener is the default value: no extra listener (mosquitto compares with the default)', () => {
  const c = load('protocol mqtt\nlistener 18830\n')
  expect(c.listeners.map(l => l.port)).toEqual([18830])
  expect(c.warnings).toEqual(['Warning: protocol before the first listener line applies to no listener (mosquitto ignores it too); move it below the listener it is meant for. (m.conf:1)'])
})

test('per_listener_settings true: password_file before any listener opens the default listener (mosquitto 2.0.11)', () => {
  const c = load('per_listener_settings true\npassword_file /pw\nlistener 18830\nallow_anonymous true\n')
  expect(c.listeners.map(l => [l.port, l.auth.passwordFile, l.auth.allowAnonymous])).toEqual([[1883, '/pw', false], [18830, undefined, true]])
})

test('per_listener_settings true: allow_anonymous before any listener applies to nothing, and says so', () => {
  const c = load('per_listener_settings true\nallow_anonymous true\nlistener 18830\n')
  expect(c.listeners.map(l => [l.port, l.auth.allowAnonymous])).toEqual([[18830, false]])
  expect(c.warnings).toEqual(['Warning: allow_anonymous before the first listener line applies to no listener (mosquitto ignores it too); move it below the listener it is meant for. (m.conf:2)'])
})

test('the older spellings mosquitto 2.0 still reads', () => {
  const c = load('retained_persistence true\nlistener 1883\nmaximum_qos 1\nretry_interval 20\n')
  expect([c.persistence.enabled, c.listeners[0]!.maxQos]).toEqual([true, 1])
  expect(c.warnings).toEqual(['Warning: Option retry_interval ignored: The retry_interval option is no longer available (as in mosquitto 2.0): unacknowledged messages are resent when the client reconnects. (m.conf:4)'])
})

test('the four MQTT 5 options: defaults', () => {
  const c = load('listener 1883')
  expect(c.limits.maxPacketSize).toBe(0)
  const l = c.listeners[0]!
  expect([l.maxQos, l.maxTopicAlias, l.acceptProtocolVersions]).toEqual([2, 10, [3, 4, 5]])
})

test('the four MQTT 5 options: set', () => {
  const c = load('max_packet_size 20\nlistener 1883\nmax_qos 1\nmax_topic_alias 0\naccept_protocol_versions 5, 4\nlistener 1884\naccept_protocol_versions 3,4\n')
  expect(c.limits.maxPacketSize).toBe(20)
  expect(c.listeners.map(l => [l.maxQos, l.maxTopicAlias, l.acceptProtocolVersions])).toEqual([[1, 0, [4, 5]], [2, 10, [3, 4]]])
})

test.each([
  ['max_packet_size 19', 'Error: Invalid max_packet_size value (19): setting below 20 bytes is forbidden; leave the option out for no limit. Error found at m.conf:1.'],
  ['max_packet_size 0', 'Error: Invalid max_packet_size value (0): setting below 20 bytes is forbidden; leave the option out for no limit. Error found at m.conf:1.'],
  ['max_packet_size -1', 'Error: Invalid max_packet_size value (-1). Error found at m.conf:1.'],
  ['listener 1883\nmax_qos 3', 'Error: max_qos must be between 0 and 2 inclusive. Error found at m.conf:2.'],
  ['listener 1883\nmaximum_qos 7', 'Error: max_qos must be between 0 and 2 inclusive. Error found at m.conf:2.'],
  ['listener 1883\nmax_topic_alias 65536', 'Error: Invalid max_topic_alias value in configuration. Error found at m.conf:2.'],
  ['listener 1883\nmax_topic_alias -1', 'Error: Invalid max_topic_alias value in configuration. Error found at m.conf:2.'],
  ['accept_protocol_versions 4\nlistener 1883', 'Error: You must define a listener before using the accept_protocol_versions option. Error found at m.conf:1.'],
  ['listener 1883\naccept_protocol_versions 4,6', 'Error: Invalid accept_protocol_versions value (6): use 3, 4 and 5 (MQTT 3.1, 3.1.1, 5.0), separated by commas. Error found at m.conf:2.'],
  ['listener 1883\naccept_protocol_versions', 'Error: Empty accept_protocol_versions value in configuration. Error found at m.conf:2.'],
  ['listener 1883\nallow_anonymous true\nper_listener_settings true', 'Error: per_listener_settings must be set before any other security settings. Error found at m.conf:3.'],
  ['mount_point a/\nlistener 1883', 'Error: You must use create a listener before using the mount_point option in the configuration file. Error found at m.conf:1.'],
  ['plugin_opt_x 1\nlistener 1883', 'Error: A plugin_opt_ option exists in the config file without an auth_plugin. Error found at m.conf:1.'],
  ['auth_plugin_deny_special_chars false', 'Error: An auth_plugin_deny_special_chars option exists in the config file without an auth_plugin. Error found at m.conf:1.'],
  ['listener 8883\ntls_engine pkcs11', 'Error: tls_engine is not supported: Midge cannot use an OpenSSL engine, and without it the listener could not use the key the engine holds. Export the certificate and key to PEM files and give them as certfile and keyfile. Error found at m.conf:2.'],
  ['listener 8883\ntls_keyform engine', 'Error: tls_keyform engine is not supported: Midge cannot use an OpenSSL engine, and without it the listener could not use the key the engine holds. Export the certificate and key to PEM files and give them as certfile and keyfile. Error found at m.conf:2.'],
  ['plugin /usr/lib/mosquitto_dynamic_security.so', 'Error: plugin /usr/lib/mosquitto_dynamic_security.so is a native mosquitto plug-in: Midge loads JavaScript plug-ins (ES modules, see config/auth-plugin-example.js), and starting without the checks this one makes would be unsafe. Error found at m.conf:1.']
])('%j is refused: %s', (text, expected) => {
  expect(problems(text)).toEqual([expected])
})

test('plugin and plugin_opt_* are auth_plugin and auth_opt_*, also mixed; auth_plugin_deny_special_chars sets the last plug-in', () => {
  const c = load('listener 1883\nauth_plugin /p/a.js\nplugin_opt_url http://x y\nplugin /p/b.mjs\nauth_opt_k v\nauth_plugin_deny_special_chars false\n')
  expect(c.auth.plugins).toEqual([
    { path: '/p/a.js', options: { url: 'http://x y' }, denySpecialChars: true, option: 'auth_plugin' },
    { path: '/p/b.mjs', options: { k: 'v' }, denySpecialChars: false, option: 'plugin' }
  ])
})

test('listener 0 PATH is a Unix socket; listener 0 ADDRESS stays "any free port"', () => {
  const c = load('listener 0 /run/midge.sock\nlistener 0 127.0.0.1\n')
  expect(c.listeners.map(l => [l.id, l.port, l.unixSocketPath, l.bindAddress])).toEqual([
    ['tcp:/run/midge.sock', 0, '/run/midge.sock', undefined], ['tcp:0', 0, undefined, '127.0.0.1']
  ])
})

test('client id options: per listener with per_listener_settings, global otherwise', () => {
  const g = load('allow_zero_length_clientid false\nauto_id_prefix dev-\nlistener 1883\nuse_username_as_clientid true\nlistener 1884\n')
  expect(g.listeners.map(l => [l.auth.allowZeroLengthClientid, l.auth.autoIdPrefix, l.useUsernameAsClientid])).toEqual([[false, 'dev-', true], [false, 'dev-', false]])
  const p = load('per_listener_settings true\nlistener 1883\nauto_id_prefix a-\nlistener 1884\nallow_zero_length_clientid false\n')
  expect(p.listeners.map(l => [l.auth.allowZeroLengthClientid, l.auth.autoIdPrefix])).toEqual([[true, 'a-'], [false, 'auto-']])
})

test('options Midge accepts with a warning saying what it does instead', () => {
  const c = load('max_inflight_bytes 1000\nlog_facility 5\nallow_duplicate_messages true\nlistener 1883\n')
  expect(c.warnings.map(w => w.split(':').slice(0, 2).join(':'))).toEqual([
    'Warning: Option max_inflight_bytes ignored',
    'Warning: Option log_facility ignored',
    'Warning: Option allow_duplicate_messages ignored'
  ])
})

test('queue_qos0_messages: the last line wins, off by default', () => {
  expect(load('listener 1883\n').limits.queueQos0Messages).toBe(false)
  expect(load('queue_qos0_messages true\nlistener 1883\n').limits.queueQos0Messages).toBe(true)
  expect(load('queue_qos0_messages true\nqueue_qos0_messages false\nlistener 1883\n').limits.queueQos0Messages).toBe(false)
  expect(load('queue_qos0_messages true\nlistener 1883\n').warnings).toEqual([])
})
