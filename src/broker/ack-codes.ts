/**
 * Reason codes in a v5 client's PUBACK/PUBREC that aedes cannot send: it acknowledges with 0x00, or with 0x87 when
 * authorizePublish refuses. Midge decides the code while it authorises the PUBLISH (aedes-hooks.ts) and records it
 * here under the packet identifier; the acknowledgement is rewritten where the bytes leave (the write coalescer's
 * batch, as for topic aliases), and only while a code waits, so other traffic is not parsed.
 *
 * - 0x10 No matching subscribers: the message was accepted, nobody gets it.
 * - 0x97 Quota exceeded: only persistent sessions away would take it, and each of their queues is full.
 * - 0x99 Payload format invalid: Payload Format Indicator 1 and a payload that is not UTF-8; the message is refused.
 */
import { readVarInt } from '../mqtt/var-int.js'

const PUBACK = 4
const PUBREC = 5

export const NO_MATCHING_SUBSCRIBERS = 0x10
export const QUOTA_EXCEEDED = 0x97
export const PAYLOAD_FORMAT_INVALID = 0x99

export class AckCodes {
  private readonly codes = new Map<number, number>()

  /** The acknowledgement of the client's PUBLISH `messageId` carries `code`. */
  set (messageId: number, code: number): void {
    this.codes.set(messageId, code)
  }

  get pending (): boolean {
    return this.codes.size > 0
  }

  /** The batch with each PUBACK/PUBREC that has a code waiting rewritten to carry it (and no properties). */
  readonly rewrite = (buf: Buffer): Buffer => {
    const out: Buffer[] = []
    let copied = 0
    let at = 0
    while (at + 1 < buf.length) {
      const header = readVarInt(buf, at + 1)
      if (header === undefined) break
      const [len, lenBytes] = header
      const body = at + 1 + lenBytes
      const end = body + len
      if (end > buf.length) break
      const type = buf[at]! >> 4
      if ((type === PUBACK || type === PUBREC) && len >= 2) {
        const id = buf.readUInt16BE(body)
        const code = this.codes.get(id)
        if (code !== undefined) {
          this.codes.delete(id)
          if (at > copied) out.push(buf.subarray(copied, at))
          out.push(Buffer.from([buf[at]!, 3, id >> 8, id & 0xff, code]))
          copied = end
        }
      }
      at = end
    }
    if (out.length === 0) return buf
    if (copied < buf.length) out.push(buf.subarray(copied))
    return Buffer.concat(out)
  }
}
