/**
 * `enable_proxy_protocol 1|2` (mosquitto 2.1): every connection to the listener starts with a PROXY protocol header of
 * that version (HAProxy `send-proxy` / `send-proxy-v2`), which carries the client's real address. The header is read
 * off the TCP socket before anything else (TLS handshake, HTTP request, MQTT CONNECT); the socket then reports the
 * client's address, so logs, ACL patterns and max_connection_rate see the client, not the proxy.
 * Header parsing is proxy-protocol-js'; this file frames the header on the stream and applies it.
 *
 * Whoever can reach such a listener can claim any address: bind it where only the proxy connects.
 */
import type { Socket } from 'node:net'
import { isIPv6 } from 'node:net'
import { V1ProxyProtocol, V2ProxyProtocol, Command, IPv4ProxyAddress, IPv6ProxyAddress } from 'proxy-protocol-js'

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
/** v1: "PROXY ... \r\n" is at most 107 bytes. */
const V1_MAX = 107
/** v2: 16 bytes, then addresses and TLVs; HAProxy's TLVs (ALPN, SNI, TLS details) stay far below this. */
const V2_MAX = 16 + 8192
/** A connection that has not sent its header by then is dropped (the proxy sends it at once). */
const HEADER_TIMEOUT_MS = 10_000

export interface ProxiedPeer {
  /** undefined: a LOCAL (health check) or UNKNOWN header, the connection keeps the proxy's own address */
  address?: string
  port?: number
}

type Framed = { header: Buffer, rest: Buffer } | 'more' | string

/** Finds a complete header of `version` at the start of `buf`; a string is the reason the connection is refused. */
function frame (buf: Buffer, version: 1 | 2): Framed {
  if (version === 1) {
    const prefix = Buffer.from('PROXY ')
    if (!buf.subarray(0, prefix.length).equals(prefix.subarray(0, Math.min(buf.length, prefix.length)))) return 'no PROXY v1 header'
    const end = buf.indexOf('\r\n')
    if (end < 0) return buf.length >= V1_MAX ? 'PROXY v1 header too long' : 'more'
    return { header: buf.subarray(0, end + 2), rest: buf.subarray(end + 2) }
  }
  const sig = buf.subarray(0, Math.min(buf.length, V2_SIGNATURE.length))
  if (!sig.equals(V2_SIGNATURE.subarray(0, sig.length))) return 'no PROXY v2 header'
  if (buf.length < 16) return 'more'
  const total = 16 + buf.readUInt16BE(14)
  if (total > V2_MAX) return 'PROXY v2 header too long'
  if (buf.length < total) return 'more'
  return { header: buf.subarray(0, total), rest: buf.subarray(total) }
}

function ipv6 (bytes: number[]): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16))
  // the canonical short form (2001:db8::9), as node reports IPv6 peers
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1)
}

/** The client's address from a complete header; throws on a malformed one. */
export function parseProxyHeader (header: Buffer, version: 1 | 2): ProxiedPeer {
  if (version === 1) {
    const p = V1ProxyProtocol.parse(header.toString('latin1'))
    if (p.inetProtocol !== 'TCP4' && p.inetProtocol !== 'TCP6') return {}
    return { address: p.source.ipAddress, port: p.source.port }
  }
  const p = V2ProxyProtocol.parse(new Uint8Array(header))
  if (p.command === Command.LOCAL) return {}
  const a = p.proxyAddress
  if (a instanceof IPv4ProxyAddress) return { address: a.sourceAddress.address.join('.'), port: a.sourcePort }
  if (a instanceof IPv6ProxyAddress) return { address: ipv6(a.sourceAddress.address), port: a.sourcePort }
  return {}
}

/**
 * Makes the socket report the client's address: node's remoteAddress/remotePort read the cached `_peername`, also
 * through a TLSSocket built on this socket (peerOf below).
 */
function applyPeer (socket: Socket, peer: ProxiedPeer): void {
  if (peer.address === undefined) return
  const address = peer.address.startsWith('::ffff:') && !peer.address.slice(7).includes(':') ? peer.address.slice(7) : peer.address
  ;(socket as unknown as { _peername: unknown })._peername = { address, port: peer.port, family: isIPv6(address) ? 'IPv6' : 'IPv4' }
}

/** A TLSSocket made from a proxied socket takes the client's address from it. */
export function adoptProxiedPeer (tlsSocket: Socket): void {
  const parent = (tlsSocket as unknown as { _parent?: { _peername?: unknown } })._parent
  if (parent?._peername !== undefined) (tlsSocket as unknown as { _peername: unknown })._peername = parent._peername
}

/**
 * Reads the header off a fresh socket, then hands the socket on (its other bytes put back first). A missing,
 * malformed or late header ends the connection through `refuse`.
 */
export function readProxyHeader (socket: Socket, version: 1 | 2, deliver: (socket: Socket) => void, refuse: (socket: Socket, reason: string) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  const timer = setTimeout(() => fail('no PROXY header within 10 s'), HEADER_TIMEOUT_MS)
  const done = (): void => {
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('error', onError)
  }
  const fail = (reason: string): void => { done(); refuse(socket, reason) }
  const onError = (): void => { done(); socket.destroy() }
  const onData = (d: Buffer): void => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d])
    const f = frame(buf, version)
    if (f === 'more') return
    if (typeof f === 'string') { fail(f); return }
    let peer: ProxiedPeer
    try { peer = parseProxyHeader(f.header, version) } catch (err) { fail(`malformed PROXY v${version} header: ${(err as Error).message}`); return }
    done()
    socket.pause()
    applyPeer(socket, peer)
    if (f.rest.length > 0) socket.unshift(f.rest)
    deliver(socket)
  }
  socket.on('data', onData)
  socket.on('error', onError)
}
