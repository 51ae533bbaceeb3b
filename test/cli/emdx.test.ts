import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { closestSubcommand } from '../../src/cli/python-emdx.js'
import type { CliResult } from '../support/cli.js'

const EMDX_BIN = fileURLToPath(new URL('../../bin/emdx.js', import.meta.url))

/** Runs the built `emdx` with only Node.js's folder on PATH, so no Python emdx takes over. */
async function runEmdx (args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [EMDX_BIN, ...args], { env: { ...process.env, PATH: path.dirname(process.execPath) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stdout, stderr }
}

describe('emdx command', () => {
  it('suggests the cascade command a typo meant', async () => {
    const result = await runEmdx(['cascade', 'stauts'])

    expect(result.code).toBe(2)
    expect(result.stderr).toContain('did you mean "emdx cascade status"?')
    expect(result.stderr).not.toContain('pip install')
  })

  it('names Python EMDX for other commands', async () => {
    const result = await runEmdx(['cascade', 'frobnicate'])

    expect(result.code).toBe(127)
    expect(result.stderr).toContain('no other emdx is installed on PATH')
  })

  it('matches subcommands two letters off at most', () => {
    expect(closestSubcommand('stauts')).toBe('status')
    expect(closestSubcommand('ad')).toBe('add')
    expect(closestSubcommand('rnus')).toBe('runs')
    expect(closestSubcommand('frobnicate')).toBeUndefined()
  })
})
