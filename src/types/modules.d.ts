declare module 'aedes-persistence-level' {
  const factory: (db: unknown) => unknown
  export default factory
}
declare module 'aedes-persistence' {
  const factory: (opts?: unknown) => unknown
  export default factory
}
