/**
 * One config per mosquitto 2.0 option (bridges aside), read by Midge: each is applied, accepted with a warning that
 * names it, or refused with a reason; never "Unknown configuration variable". Every sample that is valid for
 * mosquitto is first started with Debian's mosquitto 2.0.11, so the table only holds configs mosquitto accepts.
 * docs/mosquitto-options.md must list every option of the table.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig, BrokerError } from '../../src/index.js'
import { hashPassword } from '../../src/auth/password-hash.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'
import { freePort } from '../helpers/processes.js'
import { run } from '../helpers/processes.js'

type Verdict = 'ok' | 'warns' | 'refused'
/** option, where it goes (g: before the listener, l: after it), its lines, Midge's verdict, whether mosquitto 2.0.11 starts with it */
type Row = [option: string, where: 'g' | 'l', lines: string, midge: Verdict, mosquitto: boolean | 'n/a']

// {FILES}, {CERT}, {KEY}, {CA}, {CRL}, {DH} stand for files made in beforeAll, {PORT} for a free port. The websockets
// samples are not started with mosquitto: Debian's mosquitto 2.0.11 opens no websockets listener on this machine
// ("Unable to start any listening sockets", also with the plain `listener 8080` + `protocol websockets`).
const ROWS: Row[] = [
  ['acl_file', 'g', 'acl_file {FILES}/acl', 'ok', true],
  ['allow_anonymous', 'g', 'allow_anonymous false', 'ok', true],
  ['allow_duplicate_messages', 'g', 'allow_duplicate_messages true', 'warns', true],
  ['allow_zero_length_clientid', 'g', 'allow_zero_length_clientid false', 'ok', true],
  ['auth_opt_*', 'g', 'auth_plugin {FILES}/plugin.mjs\nauth_opt_host db.local', 'ok', 'n/a'],
  ['auth_plugin', 'g', 'auth_plugin {FILES}/plugin.mjs', 'ok', 'n/a'],
  ['auth_plugin_deny_special_chars', 'g', 'auth_plugin {FILES}/plugin.mjs\nauth_plugin_deny_special_chars false', 'ok', 'n/a'],
  ['auto_id_prefix', 'g', 'auto_id_prefix dev-', 'ok', true],
  ['autosave_interval', 'g', 'autosave_interval 60', 'warns', true],
  ['autosave_on_changes', 'g', 'autosave_on_changes true', 'warns', true],
  ['bind_address', 'g', 'port {PORT}\nbind_address 127.0.0.1', 'warns', true],
  ['check_retain_source', 'g', 'check_retain_source true', 'warns', true],
  ['clientid_prefixes', 'g', 'clientid_prefixes plant-', 'warns', true],
  ['connection_messages', 'g', 'connection_messages false', 'ok', true],
  ['include_dir', 'g', 'include_dir {FILES}/conf.d', 'ok', true],
  ['log_dest', 'g', 'log_dest file {FILES}/broker log.txt', 'ok', true],
  ['log_facility', 'g', 'log_facility 5', 'warns', true],
  ['log_timestamp', 'g', 'log_timestamp false', 'ok', true],
  ['log_timestamp_format', 'g', 'log_timestamp_format %Y-%m-%dT%H:%M:%S', 'warns', true],
  ['log_type', 'g', 'log_type subscribe', 'ok', true],
  ['max_inflight_bytes', 'g', 'max_inflight_bytes 100000', 'warns', true],
  ['max_inflight_messages', 'g', 'max_inflight_messages 10', 'ok', true],
  ['max_keepalive', 'g', 'max_keepalive 300', 'ok', true],
  ['max_packet_size', 'g', 'max_packet_size 10000', 'ok', true],
  ['max_queued_bytes', 'g', 'max_queued_bytes 1000000', 'ok', true],
  ['max_queued_messages', 'g', 'max_queued_messages 100', 'ok', true],
  ['memory_limit', 'g', 'memory_limit 100000000', 'warns', true],
  ['message_size_limit', 'g', 'message_size_limit 1000', 'ok', true],
  ['password_file', 'g', 'password_file {FILES}/passwd', 'ok', true],
  ['per_listener_settings', 'g', 'per_listener_settings true', 'ok', true],
  ['persistence', 'g', 'persistence true\npersistence_location {FILES}/data/', 'ok', true],
  ['persistence_file', 'g', 'persistence true\npersistence_location {FILES}/data/\npersistence_file other.db', 'ok', true],
  ['persistence_location', 'g', 'persistence true\npersistence_location {FILES}/data/', 'ok', true],
  ['persistent_client_expiration', 'g', 'persistent_client_expiration 2w', 'ok', true],
  ['pid_file', 'g', 'pid_file {FILES}/broker.pid', 'ok', true],
  ['plugin', 'g', 'plugin {FILES}/plugin.mjs', 'ok', 'n/a'],
  ['plugin_opt_*', 'g', 'plugin {FILES}/plugin.mjs\nplugin_opt_host db.local', 'ok', 'n/a'],
  ['port', 'g', 'port {PORT}', 'warns', true],
  ['psk_file', 'g', 'psk_file {FILES}/psk', 'ok', true],
  ['queue_qos0_messages', 'g', 'queue_qos0_messages true', 'ok', true],
  ['retain_available', 'g', 'retain_available false', 'ok', true],
  ['retained_persistence', 'g', 'retained_persistence true\npersistence_location {FILES}/data/', 'ok', true],
  ['retry_interval', 'g', 'retry_interval 20', 'warns', true],
  ['set_tcp_nodelay', 'g', 'set_tcp_nodelay true', 'warns', true],
  ['sys_interval', 'g', 'sys_interval 30', 'ok', true],
  ['upgrade_outgoing_qos', 'g', 'upgrade_outgoing_qos true', 'warns', true],
  ['user', 'g', 'user mosquitto', 'warns', 'n/a'],
  ['websockets_headers_size', 'g', 'websockets_headers_size 8192', 'ok', true],
  ['websockets_log_level', 'g', 'websockets_log_level 255', 'warns', true],
  ['listener', 'g', 'listener 0 {FILES}/midge.sock', 'ok', 'n/a'],
  ['bind_interface', 'l', 'bind_interface lo', 'warns', true],
  ['http_dir', 'l', 'protocol websockets\nhttp_dir {FILES}/www', 'ok', 'n/a'],
  ['max_connections', 'l', 'max_connections 10', 'ok', true],
  ['max_qos', 'l', 'max_qos 1', 'ok', true],
  ['maximum_qos', 'l', 'maximum_qos 1', 'ok', true],
  ['max_topic_alias', 'l', 'max_topic_alias 5', 'ok', true],
  ['mount_point', 'l', 'mount_point site1/', 'ok', true],
  ['protocol', 'l', 'protocol websockets', 'ok', 'n/a'],
  ['socket_domain', 'l', 'socket_domain ipv4', 'ok', true],
  ['use_username_as_clientid', 'l', 'use_username_as_clientid true', 'ok', true],
  ['cafile', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncafile {CA}', 'ok', true],
  ['capath', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncapath {FILES}/capath', 'ok', true],
  ['certfile', 'l', 'certfile {CERT}\nkeyfile {KEY}', 'ok', true],
  ['keyfile', 'l', 'certfile {CERT}\nkeyfile {KEY}', 'ok', true],
  ['ciphers', 'l', 'certfile {CERT}\nkeyfile {KEY}\nciphers ECDHE-RSA-AES128-GCM-SHA256', 'ok', true],
  ['ciphers_tls1.3', 'l', 'certfile {CERT}\nkeyfile {KEY}\nciphers_tls1.3 TLS_AES_128_GCM_SHA256', 'ok', true],
  ['crlfile', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncafile {CA}\nrequire_certificate true\ncrlfile {CRL}', 'ok', true],
  ['dhparamfile', 'l', 'certfile {CERT}\nkeyfile {KEY}\ndhparamfile {DH}', 'ok', true],
  ['require_certificate', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncafile {CA}\nrequire_certificate true', 'ok', true],
  ['tls_version', 'l', 'certfile {CERT}\nkeyfile {KEY}\ntls_version tlsv1.2', 'ok', true],
  ['use_identity_as_username', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncafile {CA}\nrequire_certificate true\nuse_identity_as_username true', 'ok', true],
  ['use_subject_as_username', 'l', 'certfile {CERT}\nkeyfile {KEY}\ncafile {CA}\nrequire_certificate true\nuse_subject_as_username true', 'ok', true],
  ['psk_hint', 'l', 'psk_hint midge\npsk_file {FILES}/psk', 'ok', true],
  ['tls_keyform', 'l', 'certfile {CERT}\nkeyfile {KEY}\ntls_keyform engine', 'refused', 'n/a'],
  ['tls_engine', 'l', 'certfile {CERT}\nkeyfile {KEY}\ntls_engine pkcs11', 'refused', 'n/a'],
  ['tls_engine_kpass_sha1', 'l', 'certfile {CERT}\nkeyfile {KEY}\ntls_engine_kpass_sha1 0123456789abcdef0123456789abcdef01234567', 'refused', 'n/a'],
  // mosquitto 2.1 (Debian's 2.0.11 does not know them)
  ['accept_protocol_versions', 'l', 'accept_protocol_versions 4, 5', 'ok', 'n/a'],
  ['enable_proxy_protocol', 'l', 'enable_proxy_protocol 2', 'ok', 'n/a']
]

let files: string
let certs: TestCerts
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')

beforeAll(async () => {
  files = mkdtempSync(join(tmpdir(), 'midge-options-'))
  certs = makeTestCerts()
  for (const d of ['conf.d', 'data', 'www', 'capath']) mkdirSync(join(files, d))
  writeFileSync(join(files, 'conf.d', 'extra.conf'), 'sys_interval 20\n')
  writeFileSync(join(files, 'acl'), 'topic readwrite #\n')
  writeFileSync(join(files, 'passwd'), `alice:${hashPassword('secret')}\n`)
  writeFileSync(join(files, 'psk'), 'sensor:00112233445566778899aabbccddeeff\n')
  writeFileSync(join(files, 'www', 'index.html'), '<h1>hi</h1>\n')
  writeFileSync(join(files, 'capath', 'ca.pem'), readFileSync(certs.ca))
  writeFileSync(join(files, 'plugin.mjs'), 'export default () => ({ name: "p", async authenticate () { return "defer" } })\n')
  // an empty CRL of the test CA, and DH parameters
  const cnf = join(files, 'ca.cnf')
  writeFileSync(join(files, 'index.txt'), '')
  writeFileSync(join(files, 'crlnumber'), '01\n')
  writeFileSync(cnf, `[ca]\ndefault_ca = d\n[d]\ndatabase = ${files}/index.txt\ncrlnumber = ${files}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n`)
  expect((await run('openssl', ['ca', '-config', cnf, '-keyfile', certs.ca.replace(/\.crt$/, '.key'), '-cert', certs.ca, '-gencrl', '-out', join(files, 'crl.pem')])).code).toBe(0)
  expect((await run('openssl', ['dhparam', '-dsaparam', '-out', join(files, 'dh.pem'), '2048'], { timeoutMs: 60_000 })).code).toBe(0)
}, 120_000)
afterAll(() => { rmSync(files, { recursive: true, force: true }); certs.remove() })

function sample (row: Row, port: number, forMosquitto: boolean): string {
  const [, where, lines] = row
  const text = lines.replaceAll('{FILES}', files).replaceAll('{CERT}', certs.server.cert).replaceAll('{KEY}', certs.server.key)
    .replaceAll('{CA}', certs.ca).replaceAll('{CRL}', join(files, 'crl.pem')).replaceAll('{DH}', join(files, 'dh.pem')).replaceAll('{PORT}', String(port))
  // mosquitto drops to the user "mosquitto" when started as root, which cannot read the temp files
  // log_type all: a sample's own log_type must not hide mosquitto's "running" or its errors
  const head = forMosquitto ? 'user root\nlog_dest stderr\nlog_type all\n' : ''
  const listener = `listener ${port} 127.0.0.1\nallow_anonymous true\n`
  return where === 'g' ? `${head}${text}\n${listener}` : `${head}${listener}${text}\n`
}

function midgeVerdict (conf: string, option: string): { verdict: Verdict, messages: string[] } {
  try {
    const c = loadConfig({ configText: conf, configName: 'sample.conf' })
    const key = option.replace('_*', '_')
    const warned = c.warnings.filter(w => w.includes(key))
    return { verdict: warned.length > 0 ? 'warns' : 'ok', messages: c.warnings }
  } catch (err) {
    return { verdict: 'refused', messages: [...(err as BrokerError).problems] }
  }
}

test.for(ROWS)('%s: Midge applies it, warns, or refuses it as the table says', async (row) => {
  const [option, , , expected] = row
  const { verdict, messages } = midgeVerdict(sample(row, 0, false), option)
  for (const m of messages) expect(m).not.toContain('Unknown configuration variable')
  expect({ verdict, messages }).toMatchObject({ verdict: expected })
  // a refusal says why and what to do instead
  if (verdict === 'refused') expect(messages.join('\n')).toMatch(/Midge cannot .*(PEM files|certfile)/)
})

/** Starts mosquitto on the sample for 5 s (TLS set-up is slow on a loaded machine): its output, and whether it reached "running" without an error line. */
async function mosquittoStarts (row: Row): Promise<{ option: string, ok: boolean, output: string }> {
  const [port, other] = [await freePort(), await freePort()]
  const conf = join(files, `mosquitto-${row[0]}.conf`)
  writeFileSync(conf, sample(row, port, true).replaceAll(`listener ${port} `, `listener ${other} `).replace(`port ${other}`, `port ${port}`))
  const r = await run('timeout', ['-k', '2', '-s', 'INT', '5', 'mosquitto', '-c', conf], { timeoutMs: 10_000 })
  const output = (r.stdout + r.stderr).split('\n').filter(l => /Error|running/.test(l)).join('\n')
  return { option: row[0], ok: /mosquitto version \S+ running/.test(output) && !/Error/.test(output), output: `exit ${r.code ?? r.signal}: ${output}` }
}

test('every sample marked so starts Debian\'s mosquitto 2.0.11 (4 at a time)', async () => {
  const rows = ROWS.filter(r => r[4] === true)
  const results: Array<{ option: string, ok: boolean, output: string }> = []
  for (let i = 0; i < rows.length; i += 4) results.push(...await Promise.all(rows.slice(i, i + 4).map(mosquittoStarts)))
  expect(results.filter(r => !r.ok)).toEqual([])
}, 180_000)

test('docs/mosquitto-options.md has a row for every option of this table', () => {
  const doc = readFileSync(join(ROOT, 'docs/mosquitto-options.md'), 'utf8')
  const missing = ROWS.map(r => r[0]).filter(o => !doc.includes(`| \`${o}\``))
  expect(missing).toEqual([])
})
