import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, realpath } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The `emdx cascade` subcommands this tool implements. */
export const CASCADE_SUBCOMMANDS = ['add', 'status', 'show', 'runs', 'sync']

/**
 * True when this tool handles the arguments: `emdx cascade` with one of its
 * subcommands, or a request for help or the version.
 */
export function implemented (args: string[]): boolean {
  const [command, subcommand] = args
  if (command === undefined || command === '--help' || command === '-h' || command === '--version' || command === '-V' || command === 'help') {
    return true
  }
  if (command !== 'cascade') {
    return false
  }
  return subcommand === undefined || subcommand.startsWith('-') || subcommand === 'help' || CASCADE_SUBCOMMANDS.includes(subcommand)
}

/** Finds the cascade subcommand a mistyped one most likely means: at most two letters off, else undefined. */
export function closestSubcommand (typed: string): string | undefined {
  let best: { name: string, distance: number } | undefined
  for (const name of CASCADE_SUBCOMMANDS) {
    const distance = editDistance(typed, name)
    if (distance <= 2 && (best === undefined || distance < best.distance)) {
      best = { name, distance }
    }
  }
  return best?.name
}

/** Counts the single-letter insertions, deletions, changes or swaps of neighbours that turn `a` into `b`. */
function editDistance (a: string, b: string): number {
  // rows[i][j] is the distance between the first i letters of a and the first j of b.
  const rows = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
  for (let i = 0; i <= a.length; i++) {
    (rows[i] as number[])[0] = i
  }
  for (let j = 0; j <= b.length; j++) {
    (rows[0] as number[])[j] = j
  }
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = rows[i] as number[]
      const above = rows[i - 1] as number[]
      const change = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + change)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((rows[i - 2] as number[])[j - 2] as number) + 1)
      }
    }
  }
  return (rows[a.length] as number[])[b.length] as number
}

/** Returns the files this tool itself is started from, so PATH search can skip them. */
async function ownExecutables (): Promise<Set<string>> {
  const own = new Set<string>()
  const script = process.argv[1]
  if (script !== undefined) {
    own.add(await realpath(script).catch(() => script))
  }
  own.add(await realpath(fileURLToPath(new URL('../../bin/emdx.js', import.meta.url))).catch(() => ''))
  return own
}

/** Finds the first `emdx` on PATH that is not this tool, such as the Python EMDX. */
export async function findPythonEmdx (env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const own = await ownExecutables()
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(entry => entry !== '')) {
    const candidate = path.join(dir, 'emdx')
    try {
      await access(candidate, constants.X_OK)
    } catch {
      continue
    }
    const resolved = await realpath(candidate).catch(() => candidate)
    if (!own.has(resolved)) {
      return candidate
    }
  }
  return undefined
}

/** Runs the Python emdx with the same arguments; resolves with the exit code to use. */
export async function handOver (args: string[]): Promise<number> {
  const python = await findPythonEmdx()
  const [command, subcommand] = args
  const meant = command === 'cascade' && subcommand !== undefined ? closestSubcommand(subcommand) : undefined
  if (python === undefined && meant !== undefined) {
    process.stderr.write(`emdx: "cascade ${subcommand ?? ''}" is not a cascade command; did you mean "emdx cascade ${meant}"? See "emdx cascade --help"\n`)
    return 2
  }
  if (python === undefined) {
    process.stderr.write(`emdx: "${args.join(' ')}" is not a cascade command, and no other emdx is installed on PATH to run it; install EMDX (pip install emdx) or use "emdx cascade --help"\n`)
    return 127
  }
  const child = spawn(python, args, { stdio: 'inherit' })
  return await new Promise(resolve => {
    child.on('error', (err) => {
      process.stderr.write(`emdx: cannot run ${python}: ${err.message}\n`)
      resolve(127)
    })
    child.on('exit', (code, signal) => { resolve(code ?? (signal === null ? 1 : 128)) })
  })
}
