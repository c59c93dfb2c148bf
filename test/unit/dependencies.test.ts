/**
 * Dependencies between the folders of src/ point one way: no folder imports, directly or through others, one that
 * imports it back, and persistence/ never imports broker/. Each root file (src/*.ts) counts on its own. The command
 * (cli/, with main.ts, its entry) and the bench tools (bench/) may import anything; nothing else imports them.
 * Type-only imports count: they tie the folders together as much as value imports do.
 */
import { test, expect } from 'vitest'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src')
/** Units that may import anything. */
const TOOLS = new Set(['cli', 'bench', 'main.ts'])
/** What may import a tool: the command's entry point, and the tools themselves. */
const MAY_IMPORT_TOOLS = new Set(['main.ts', 'cli', 'bench'])

function sourceFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => {
    const p = join(dir, e.name)
    if (e.isDirectory()) return sourceFiles(p)
    return e.name.endsWith('.ts') ? [p] : []
  })
}

/** The folder under src/ a file is in, or the root file's own name. */
function unitOf (file: string): string {
  const r = relative(SRC, file)
  const slash = r.indexOf('/')
  return slash < 0 ? r : r.slice(0, slash)
}

/** `import ... from`, `export ... from`, `import '...'` and `import('...')` specifiers that are relative paths. */
const IMPORT = /(?:^|[\s;])(?:import|export)\s(?:[^'";]*?\sfrom\s)?['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g

interface Edge { from: string, to: string, where: string }

function edges (): Edge[] {
  const out: Edge[] = []
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(IMPORT)) {
      const spec = (m[1] ?? m[2])!
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'))
      const from = unitOf(file)
      const to = unitOf(target)
      if (from !== to) out.push({ from, to, where: `${relative(SRC, file)} imports ${spec}` })
    }
  }
  return out
}

/** Every cycle's units (Tarjan's strongly connected components of more than one unit). */
function cycles (graph: Map<string, Set<string>>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, next); low.set(v, next); next++
    stack.push(v); onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)) } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = []
      let w: string
      do { w = stack.pop()!; onStack.delete(w); scc.push(w) } while (w !== v)
      if (scc.length > 1) found.push(scc.sort())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

const all = edges()

test('the scan finds the imports it should (the test would pass on nothing otherwise)', () => {
  expect(all.some(e => e.from === 'broker' && e.to === 'persistence')).toBe(true)
  expect(all.some(e => e.from === 'main.ts' && e.to === 'cli')).toBe(true)
})

test('no cycle between the folders of src/ (cli/ and bench/ aside)', () => {
  const graph = new Map<string, Set<string>>()
  for (const e of all) {
    if (TOOLS.has(e.from)) continue
    if (!graph.has(e.from)) graph.set(e.from, new Set())
    graph.get(e.from)!.add(e.to)
  }
  const found = cycles(graph).map(scc => {
    const inside = new Set(scc)
    return `${scc.join(' <-> ')}: ${all.filter(e => inside.has(e.from) && inside.has(e.to)).map(e => e.where).join('; ')}`
  })
  expect(found).toEqual([])
})

test('nothing imports cli/ or bench/ but the command itself', () => {
  const wrong = all.filter(e => (e.to === 'cli' || e.to === 'bench') && !MAY_IMPORT_TOOLS.has(e.from)).map(e => e.where)
  expect(wrong).toEqual([])
})

test('persistence/ never imports broker/', () => {
  expect(all.filter(e => e.from === 'persistence' && e.to === 'broker').map(e => e.where)).toEqual([])
})
