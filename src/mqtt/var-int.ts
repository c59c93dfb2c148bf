/**
 * MQTT's Variable Byte Integer [MQTT-1.5.5]: the remaining length of every fixed header and the length of a v5
 * property block, 7 bits per byte, low bits first, at most 4 bytes. One reader and one writer for every place
 * Midge looks at packets as bytes (the CONNACK amendment, acknowledgement codes, outgoing topic aliases, enhanced
 * authentication, the bench's wire helpers).
 */

/** The integer at `at`: its value and how many bytes it took; undefined while incomplete (or longer than 4 bytes). */
export function readVarInt (buf: Buffer, at: number): [value: number, bytes: number] | undefined {
  let value = 0
  let mul = 1
  for (let i = 0; i < 4 && at + i < buf.length; i++) {
    const b = buf[at + i]!
    value += (b & 0x7f) * mul
    if ((b & 0x80) === 0) return [value, i + 1]
    mul *= 128
  }
  return undefined
}

/** The bytes of `n` as a Variable Byte Integer. */
export function encodeVarInt (n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

/** Length in bytes of the whole packet that starts at `at` (fixed header included); undefined while its header is incomplete. */
export function packetLength (buf: Buffer, at = 0): number | undefined {
  const r = readVarInt(buf, at + 1)
  return r === undefined ? undefined : 1 + r[1] + r[0]
}
