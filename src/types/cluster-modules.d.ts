declare module 'aedes-persistence-redis' {
  /** aedes-persistence-redis 11: `conn` is an ioredis client the store uses (and disconnects on destroy). */
  const factory: (opts?: { conn?: unknown, maxSessionDelivery?: number, packetTTL?: (packet: unknown) => number }) => unknown
  export default factory
}
