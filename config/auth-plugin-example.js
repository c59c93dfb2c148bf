// Example Midge auth plugin: device tokens.
//
// A device logs in with its name as the username and, as the password, a token derived from a server secret:
//   token = hex(HMAC-SHA256(secret, username))
// so no per-device password file is needed: hand each device its token once. The device may then publish and
// subscribe under devices/<username>/ and nowhere else (unless a password_file/acl_file listed before it allows more).
//
// Enable it in midge.conf (auth_opt_* lines pass options to the auth_plugin above them):
//   auth_plugin /etc/midge/auth-plugin-example.js
//   auth_opt_secret_file /etc/midge/device-secret        # a file holding the secret (chmod 600)
//   auth_opt_prefix devices                              # optional, default "devices"
//
// Make a token for device "sensor-1":
//   node -e "const c=require('node:crypto');console.log(c.createHmac('sha256',require('fs').readFileSync('/etc/midge/device-secret','utf8').trim()).update('sensor-1').digest('hex'))"
//
// The module's default export is a factory (options, log) => provider. Every method is optional; each answers
// 'allow' or 'deny' (final) or 'defer' (ask the next provider; if all defer, the answer is deny):
//   authenticate({ clientId, username, password (Buffer), conn })            -> Promise<'allow'|'deny'|'defer'>
//   authorize({ clientId, username, conn, action: 'publish'|'subscribe', topic, qos, retain }) -> Promise<...>
//   authorizeReceive({ clientId, username, topic })  -> 'allow'|'deny'|'defer'  (synchronous: runs per delivered message)
//   reload()  (SIGHUP; throw to keep the old state and have the reason logged)      close()  (shutdown)
//   enhancedAuth({ method, data, username, clientId, conn, reauthenticate, signal })  MQTT 5 AUTH exchanges: see
//     "Enhanced authentication" in docs/security.md (this example does not use it)
import { createHmac, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'

export default function createAuthProvider (options, log) {
  if (!options.secret_file) throw new Error('auth_opt_secret_file is required')
  const prefix = options.prefix ?? 'devices'
  let secret = readFileSync(options.secret_file, 'utf8').trim()
  if (secret.length < 16) throw new Error(`the secret in ${options.secret_file} is shorter than 16 characters`)

  const tokenFor = (username) => createHmac('sha256', secret).update(username).digest()
  const own = (username, topic) => username !== undefined && !/[+#/]/.test(username) &&
    (topic === `${prefix}/${username}` || topic.startsWith(`${prefix}/${username}/`))

  return {
    name: 'device-token example',

    async authenticate ({ username, password }) {
      if (username === undefined || password === undefined) return 'defer'
      const given = Buffer.from(password.toString('utf8'), 'hex')
      const want = tokenFor(username)
      // constant-time comparison; never log the password
      return given.length === want.length && timingSafeEqual(given, want) ? 'allow' : 'defer'
    },

    async authorize ({ username, topic }) {
      return own(username, topic) ? 'allow' : 'defer'
    },

    authorizeReceive ({ username, topic }) {
      return own(username, topic) ? 'allow' : 'defer'
    },

    async reload () {
      const next = (await readFile(options.secret_file, 'utf8')).trim()
      if (next.length < 16) throw new Error(`the secret in ${options.secret_file} is shorter than 16 characters; keeping the old one`)
      secret = next
      log.info('device-token secret reloaded')
    }
  }
}
