import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
let built: Promise<unknown> | undefined

/**
 * Compiles src/ to dist/ once per test process, for tests that run the
 * code in child processes (Node.js 20 does not load TypeScript).
 */
export async function ensureBuilt (): Promise<void> {
  built ??= promisify(execFile)(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root })
  await built
}
