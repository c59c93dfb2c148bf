import { test, expect } from 'vitest'
import { hostname } from 'node:os'
import { runMidge, writeConf } from '../helpers/processes.js'
import { tempDir } from '../helpers/start-broker.js'
import { load, problems } from '../helpers/config.js'

const HEAD = 'listener 1883\nconnection cloud\naddress 10.0.0.1\n'

test('a bridge with mosquitto\'s defaults', () => {
  const [b] = load(`${HEAD}topic sensors/#`).bridges
  expect(b).toEqual({
    name: 'cloud',
    source: 'm.conf:2',
    addresses: [{ host: '10.0.0.1', port: 1883 }],
    roundRobin: false,
    topics: [{ pattern: 'sensors/#', direction: 'out', qos: 0, localPrefix: '', remotePrefix: '' }],
    protocolVersion: 4,
    cleanSession: false,
    localCleanSession: false,
    remoteClientId: `cloud.${hostname()}`,
    localClientId: `local.cloud.${hostname()}`,
    notifications: true,
    notificationTopic: `$SYS/broker/connection/cloud.${hostname()}/state`,
    notificationsLocalOnly: false,
    tryPrivate: true,
    startType: 'automatic',
    restartTimeout: { kind: 'backoff', base: 5, cap: 30 },
    idleTimeoutSeconds: 60,
    threshold: 10,
    keepaliveSeconds: 60,
    attemptUnsubscribe: true,
    outgoingRetain: true,
    maxPacketSize: 0,
    maxQueuedMessages: 100_000
  })
})

test('every bridge option, in two blocks; options after a block keep applying to the broker', () => {
  const c = load([
    'listener 1883',
    'connection pi-to-cloud',
    'addresses broker.example.com:8883 [2001:db8::1]:8883',
    'address backup.example.com',
    'round_robin true',
    'topic sensors/# out 1 pi/ site1/',
    'topic cmd/# in 2 "" site1/',
    'topic "" both 1 local/state remote/state',
    'topic alarms/+',
    'bridge_protocol_version mqttv50',
    'cleansession true',
    'local_cleansession false',
    'clientid pi1',
    'local_clientid pi1-local',
    'username site1',
    'password s3cret',
    'local_username bridge',
    'local_password lp',
    'notifications false',
    'notification_topic site1/bridge/state',
    'notifications_local_only true',
    'try_private false',
    'start_type lazy',
    'restart_timeout 10 120',
    'idle_timeout 30',
    'threshold 5',
    'keepalive_interval 20',
    'bridge_attempt_unsubscribe false',
    'bridge_outgoing_retain false',
    'bridge_max_packet_size 10000',
    'bridge_bind_address 192.168.1.10',
    'bridge_cafile /etc/ssl/ca.pem',
    'bridge_certfile /etc/ssl/pi.pem',
    'bridge_keyfile /etc/ssl/pi.key',
    'bridge_insecure true',
    'bridge_tls_version tlsv1.3',
    'bridge_alpn mqtt',
    'bridge_max_queued_messages 5000',
    'connection second',
    'address ws://10.0.0.2:8080/mqtt',
    'topic x in',
    'remote_clientid second-id',
    'remote_username u',
    'remote_password p',
    'restart_timeout 7',
    'start_type once',
    'bridge_protocol_version mqttv31',
    'max_keepalive 120'
  ].join('\n'))
  expect(c.limits.maxKeepalive).toBe(120)
  const [a, b] = c.bridges
  expect(a).toMatchObject({
    addresses: [{ host: 'broker.example.com', port: 8883 }, { host: '2001:db8::1', port: 8883 }, { host: 'backup.example.com', port: 1883 }],
    roundRobin: true,
    topics: [
      { pattern: 'sensors/#', direction: 'out', qos: 1, localPrefix: 'pi/', remotePrefix: 'site1/' },
      { pattern: 'cmd/#', direction: 'in', qos: 2, localPrefix: '', remotePrefix: 'site1/' },
      { pattern: '', direction: 'both', qos: 1, localPrefix: 'local/state', remotePrefix: 'remote/state' },
      { pattern: 'alarms/+', direction: 'out', qos: 0, localPrefix: '', remotePrefix: '' }
    ],
    protocolVersion: 5,
    cleanSession: true,
    localCleanSession: false,
    remoteClientId: 'pi1',
    localClientId: 'pi1-local',
    remoteUsername: 'site1',
    remotePassword: 's3cret',
    localUsername: 'bridge',
    localPassword: 'lp',
    notifications: false,
    notificationTopic: 'site1/bridge/state',
    notificationsLocalOnly: true,
    tryPrivate: false,
    startType: 'lazy',
    restartTimeout: { kind: 'backoff', base: 10, cap: 120 },
    idleTimeoutSeconds: 30,
    threshold: 5,
    keepaliveSeconds: 20,
    attemptUnsubscribe: false,
    outgoingRetain: false,
    maxPacketSize: 10000,
    bindAddress: '192.168.1.10',
    tls: { cafile: '/etc/ssl/ca.pem', certfile: '/etc/ssl/pi.pem', keyfile: '/etc/ssl/pi.key', insecure: true, version: 'tlsv1.3', alpn: 'mqtt' },
    maxQueuedMessages: 5000
  })
  expect(b).toMatchObject({
    name: 'second',
    addresses: [{ host: '10.0.0.2', port: 8080, websocket: { secure: false, path: '/mqtt' } }],
    remoteClientId: 'second-id',
    localClientId: 'local.second-id',
    localCleanSession: false,
    notificationTopic: '$SYS/broker/connection/second-id/state',
    restartTimeout: { kind: 'constant', seconds: 7 },
    startType: 'once',
    protocolVersion: 3
  })
})

test('keepalive_interval below 5 is raised to 5 with mosquitto\'s warning', () => {
  const c = load(`${HEAD}topic x\nkeepalive_interval 2`)
  expect(c.bridges[0]!.keepaliveSeconds).toBe(5)
  expect(c.warnings).toContain('Warning: keepalive interval too low, using 5 seconds. (m.conf:5)')
})

// [lines, problems]: mosquitto 2.0.11's wording where it has one (checked against /usr/sbin/mosquitto)
test.each([
  ['listener 1883\naddress 10.0.0.1', ['Error: Invalid bridge configuration. Error found at m.conf:2.']],
  ['listener 1883\ntopic x out 1', ['Error: Invalid bridge configuration. Error found at m.conf:2.']],
  ['listener 1883\nconnection a\ntopic x out 0', ['Error: Invalid bridge configuration: no remote addresses defined. (connection a at m.conf:2)']],
  ['listener 1883\nconnection a\naddress 10.0.0.1', ['Error: Invalid bridge configuration: no topics defined. (connection a at m.conf:2)']],
  [`${HEAD}topic x\nconnection cloud\naddress h\ntopic y`, ['Error: Duplicate bridge name "cloud". Error found at m.conf:5.']],
  [`${HEAD}topic x sideways`, ['Error: Invalid bridge topic direction \'sideways\'. Error found at m.conf:4.']],
  [`${HEAD}topic x out 3`, ['Error: Invalid bridge QoS level \'3\'. Error found at m.conf:4.']],
  [`${HEAD}topic "" out 1 "" ""`, ['Error: Invalid bridge remapping. Error found at m.conf:4.']],
  [`${HEAD}topic "" out 1 local ""`, ['Error: Invalid bridge remapping. Error found at m.conf:4.']],
  [`${HEAD}topic x out 1 local/`, ['Error: Invalid bridge remapping: a local prefix needs a remote prefix. Error found at m.conf:4.']],
  [`${HEAD}topic a/#/b`, ['Error: Invalid bridge topic pattern \'a/#/b\'. Error found at m.conf:4.']],
  [`${HEAD}topic x out 0 a/+/ b/`, ['Error: Invalid bridge topic local prefix or remote prefix: wildcards are not allowed. Error found at m.conf:4.']],
  [`${HEAD}topic x\nbridge_protocol_version mqttv4`, ['Error: Invalid bridge_protocol_version value (mqttv4). Error found at m.conf:5.']],
  [`${HEAD}topic x\nstart_type manual`, ['Error: Manual start_type not supported. Error found at m.conf:5.']],
  [`${HEAD}topic x\nstart_type sometimes`, ['Error: Invalid start_type value (sometimes). Error found at m.conf:5.']],
  [`${HEAD}topic x\nrestart_timeout 10 5`, ['Error: backoff cap is lower than the base in restart_timeout. Error found at m.conf:5.']],
  [`${HEAD}topic x\nrestart_timeout soon`, ['Error: Invalid restart_timeout value (soon). Error found at m.conf:5.']],
  [`${HEAD}topic x\ncleansession maybe`, ['Error: Invalid cleansession value (maybe). Error found at m.conf:5.']],
  [`${HEAD}topic x\nkeepalive_interval -1`, ['Error: Invalid keepalive_interval value (-1). Error found at m.conf:5.']],
  [`${HEAD}topic x\nthreshold 0`, ['Error: Invalid threshold value (0). Error found at m.conf:5.']],
  [`${HEAD}topic x\nbridge_tls_version sslv3`, ['Error: Unsupported bridge_tls_version "sslv3". Error found at m.conf:5.']],
  [`${HEAD}topic x\nbridge_psk 00ff`, ['Error: bridge_psk (TLS-PSK) is not supported by Midge bridges: use bridge_cafile with certificates. Error found at m.conf:5.']],
  [`${HEAD}topic x\nbridge_identity id`, ['Error: bridge_identity (TLS-PSK) is not supported by Midge bridges: use bridge_cafile with certificates. Error found at m.conf:5.']],
  [`${HEAD}topic x\nbridge_require_ocsp true`, ['Error: bridge_require_ocsp is not supported by Midge bridges: Node.js does not check OCSP responses. Error found at m.conf:5.']],
  [`${HEAD}topic x\nremote_password p`, ['Error: remote_password is only valid with remote_username. (connection cloud at m.conf:2)']],
  [`${HEAD}topic x\nlocal_password p`, ['Error: local_password is only valid with local_username. (connection cloud at m.conf:2)']],
  [`${HEAD}topic x\nbridge_certfile c.pem\nbridge_cafile ca.pem`, ['Error: bridge_certfile and bridge_keyfile must be given together. (connection cloud at m.conf:2)']],
  [`${HEAD}topic x\nbridge_insecure true`, ['Error: bridge TLS options need bridge_cafile or bridge_capath. (connection cloud at m.conf:2)']],
  [`${HEAD}topic x\nremote_clientid same\nlocal_clientid same`, ['Error: local_clientid and remote_clientid must differ: a broker bridged to itself would take over its own session. (connection cloud at m.conf:2)']],
  ['listener 1883\nconnection a/b\naddress h\ntopic x', ['Error: Invalid connection name (a/b): use 1 to 64 letters, digits, \'_\', \'.\' or \'-\'. Error found at m.conf:2.']],
  [`${HEAD}topic x\naddress host:99999`, ['Error: Invalid bridge address: invalid address (host:99999). Error found at m.conf:5.']]
])('%j is refused with %j', (text, expected) => {
  expect(problems(text)).toEqual(expected)
})

test('bridges are accepted with cluster_redis (each runs on the node holding its lease)', () => {
  const cfg = load(`${HEAD}topic x\ncluster_redis redis://127.0.0.1:6379`)
  expect(cfg.bridges.map(b => b.name)).toEqual(['cloud'])
  expect(cfg.cluster?.redisUrl).toBe('redis://127.0.0.1:6379')
})

test('midge check: a bridge error exits 3 naming file:line; the remote password never appears in the output', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const bad = await writeConf(dir, 'listener 1883\nconnection cloud\naddress 10.0.0.1\ntopic x out 7\n', 'bad.conf')
  const r = await runMidge(['check', '-c', bad], dir)
  expect(r.code).toBe(3)
  expect(r.output).toContain(`Error: Invalid bridge QoS level '7'. Error found at ${bad}:4.`)
  const good = await writeConf(dir, 'listener 1883\nconnection cloud\naddress 10.0.0.1\ntopic x\nremote_username u\nremote_password hunter2-secret\nlocal_username l\nlocal_password other-secret\n', 'good.conf')
  const ok = await runMidge(['check', '-c', good], dir)
  expect(ok.code).toBe(0)
  expect(ok.output).toContain('"remoteUsername": "u"')
  expect(ok.output).not.toContain('hunter2-secret')
  expect(ok.output).not.toContain('other-secret')
})

test('a missing bridge TLS file stops start-up with one line naming the bridge, the option and the file (exit 1)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  const conf = await writeConf(dir, `listener 0 127.0.0.1\nconnection cloud\naddress 127.0.0.1:1\ntopic x\nbridge_cafile ${dir}/nope.crt\n`)
  const r = await runMidge(['-c', conf], dir)
  expect(r.code).toBe(1)
  expect(r.output).toContain(`Error: bridge cloud: cannot read bridge_cafile ${dir}/nope.crt: no such file.`)
})
