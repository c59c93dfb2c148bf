/**
 * `midge check` opens every file the config names and reports what start-up would report: for each broken file,
 * check and `midge -c` (the real binary, `npm run build` first) print the same error line and exit with the same code.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/start-broker.js'
import { runMidge, writeConf } from '../helpers/processes.js'
import { makeTestCerts, type TestCerts } from '../helpers/certs.js'

let certs: TestCerts
beforeAll(() => { certs = makeTestCerts() }, 60_000)
afterAll(() => certs.remove())

/** CERT, KEY and CA stand for the test certificates, made once the file's tests start. */
const tlsListener = (extra: string): string => `listener 0 127.0.0.1\ncertfile CERT\nkeyfile KEY\n${extra}`
const withCerts = (conf: string): string => conf.replaceAll('CERT', certs.server.cert).replaceAll('KEY', certs.server.key).replaceAll('CA', certs.ca)

// [name, config ({dir} = a temp dir holding the files written by `files`), files, exit code, the error line]
const CASES: Array<[string, string, Record<string, string>, number, string]> = [
  ['missing password_file', 'listener 0 127.0.0.1\npassword_file {dir}/nope\n', {}, 1, 'Error: unable to open password_file "{dir}/nope": no such file.'],
  ['bad ACL line', 'listener 0 127.0.0.1\nallow_anonymous true\nacl_file {dir}/acl\n', { acl: 'topic read a/#\nfrobnicate b\n' }, 3, 'Error: invalid line in acl_file: "frobnicate" is not user, topic or pattern ({dir}/acl:2).'],
  ['missing certfile', 'listener 0 127.0.0.1\ncertfile {dir}/none.crt\nkeyfile {dir}/none.key\nallow_anonymous true\n', {}, 1, 'Error: unable to load certfile "{dir}/none.crt" for tls listener on port 0 (midge.conf:1): no such file.'],
  ['missing crlfile', tlsListener('crlfile {dir}/crl.pem\nrequire_certificate true\ncafile CA\nallow_anonymous true\n'), {}, 1, 'Error: unable to load crlfile "{dir}/crl.pem" for tls listener on port 0 (midge.conf:1): no such file.'],
  ['bad psk_file line', 'psk_file {dir}/psk\nlistener 0 127.0.0.1\npsk_hint h\nallow_anonymous true\n', { psk: 'id:nothex\n' }, 1, 'Error: invalid line in psk_file ({dir}/psk:1): expected identity:hexkey.'],
  ['plug-in whose factory fails', 'listener 0 127.0.0.1\nplugin {dir}/p.mjs\nplugin_opt_db nowhere\n', { 'p.mjs': 'export default (o) => { throw new Error("cannot reach " + o.db) }\n' }, 1, 'Error: unable to load auth_plugin "{dir}/p.mjs": its factory failed: cannot reach nowhere.'],
  ['missing plug-in', 'listener 0 127.0.0.1\nauth_plugin {dir}/gone.mjs\n', {}, 1, 'Error: unable to load auth_plugin "{dir}/gone.mjs": no such file.']
]

test.for(CASES)('%s: check and start-up print the same line and exit code', { timeout: 60_000 }, async ([, conf, files, code, line], { onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const path = await writeConf(dir, withCerts(conf))
  const expected = line.replaceAll('{dir}', dir).replace('midge.conf:1', `${path}:1`)
  const check = await runMidge(['check', '-c', path], dir)
  const start = await runMidge(['-c', path], dir)
  expect([check.code, start.code]).toEqual([code, code])
  expect(check.output.trim().split('\n')).toContain(expected)
  expect(start.output).toContain(expected)
  expect(check.output).not.toContain('Configuration OK')
})

test('check passes a config whose files are all good, and says OK', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir()
  onTestFinished(remove)
  writeFileSync(join(dir, 'psk'), 'id:00ff\n')
  writeFileSync(join(dir, 'acl'), 'topic #\n')
  writeFileSync(join(dir, 'p.mjs'), 'export default () => ({ name: "p", async authenticate () { return "defer" } })\n')
  const path = await writeConf(dir, withCerts(`psk_file {dir}/psk\nacl_file {dir}/acl\nplugin {dir}/p.mjs\n${tlsListener('')}listener 0 127.0.0.1\npsk_hint h\nallow_anonymous true\n`))
  const r = await runMidge(['check', '-c', path], dir)
  expect(r.code).toBe(0)
  expect(r.output).toContain('Configuration OK')
}, 60_000)
