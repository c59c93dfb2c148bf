// A test auth_plugin for MQTT 5 enhanced authentication: the method MIDGE-HMAC-SHA256, a challenge-response in
// `auth_opt_rounds` rounds (default 2), SCRAM-like in that the key never crosses the wire and the server proves
// itself at the end.
//
//   key    = HMAC-SHA256(auth_opt_secret, username)
//   CONNECT (or AUTH 0x19): Authentication Data = the client's nonce (cnonce)
//   each round: server AUTH 0x18 with a fresh 16-byte nonce n; client AUTH 0x18 with HMAC-SHA256(key, cnonce || n)
//   after the last round: CONNACK (or AUTH 0x00) with HMAC-SHA256(key, "server" || n1 || n2 ...)
//
// A wrong answer is refused ('deny'); another method is left to the next plug-in ('defer'). The username the
// client acts as is `auth_opt_user_prefix` + its CONNECT username, so tests can see the plug-in's name reach the ACL.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export const METHOD = 'MIDGE-HMAC-SHA256'

const hmac = (key, ...parts) => {
  const h = createHmac('sha256', key)
  for (const p of parts) h.update(p)
  return h.digest()
}

export default function createAuthProvider (options) {
  if (!options.secret) throw new Error('auth_opt_secret is required')
  const rounds = Number(options.rounds ?? '2')
  const prefix = options.user_prefix ?? ''
  return {
    name: 'challenge-auth',
    async enhancedAuth (req) {
      if (req.method !== METHOD) return { result: 'defer' }
      if (req.username === undefined || req.data === undefined) return { result: 'deny' }
      const key = hmac(options.secret, req.username)
      const cnonce = req.data
      const nonces = []
      const challenge = () => {
        const n = randomBytes(16)
        nonces.push(n)
        return {
          result: 'continue',
          data: n,
          next: async (proof) => {
            const want = hmac(key, cnonce, n)
            if (proof === undefined || proof.length !== want.length || !timingSafeEqual(proof, want)) return { result: 'deny' }
            if (nonces.length < rounds) return challenge()
            return { result: 'allow', data: hmac(key, 'server', ...nonces), username: prefix + req.username }
          }
        }
      }
      return challenge()
    }
  }
}
