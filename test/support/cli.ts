import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const EMDX_NODE_BIN = fileURLToPath(new URL('../../bin/emdx-node.js', import.meta.url))

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs the built `emdx-node` command to completion (`npm test` builds first).
 * A command still running after `timeoutMs` is killed and reported with code null.
 */
export async function runCli (args: string[], options: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [EMDX_NODE_BIN, ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })

  const timer = setTimeout(() => { child.kill('SIGKILL') }, options.timeoutMs ?? 30_000)
  const code = await new Promise<number | null>(resolve => child.on('close', (exitCode) => { resolve(exitCode) }))
  clearTimeout(timer)
  return { code, stdout, stderr }
}
