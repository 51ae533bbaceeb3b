import { spawn } from 'node:child_process'
import net from 'node:net'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { IDENTITY_FILE_NAME } from '../../src/node/identity.js'
import { EMDX_NODE_BIN, runCli } from '../support/cli.js'
import { makeTempDir } from '../support/temp.js'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'

const loopback = ['--listen-host', '127.0.0.1', '--port', '0', '--no-mdns']

async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}

/** Starts `emdx-node start` and resolves once it printed its banner. */
async function startProcess (dataDir: string, apiPort: number): Promise<{ child: ChildProcessWithoutNullStreams, stdout: () => string }> {
  const child = spawn(process.execPath, [EMDX_NODE_BIN, 'start', '--data-dir', dataDir, '--api-port', String(apiPort), ...loopback, '--log-format', 'json'])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no banner within 30 s: ${stdout}`)) }, 30_000)
    child.stdout.on('data', () => {
      if (stdout.includes('API:')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited with ${code}: ${stdout}${stderr}`))
    })
  })
  return { child, stdout: () => stdout }
}

async function exitCode (child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) {
    return child.exitCode
  }
  return await new Promise(resolve => child.once('exit', resolve))
}

describe('emdx-node start rejections', () => {
  const cases: Array<[string, string[], string]> = [
    ['zero CPUs', ['--share-cpu', '0'], 'invalid --share-cpu "0"'],
    ['more CPUs than the machine has', ['--share-cpu', '4096'], 'share at most'],
    ['negative memory', ['--share-mem', '-2g'], 'invalid --share-mem "-2g"'],
    ['non-numeric memory', ['--share-mem', 'much'], 'invalid --share-mem "much"'],
    ['malformed multiaddr', ['--bootstrap', 'not-a-multiaddr'], 'invalid --bootstrap "not-a-multiaddr"']
  ]

  for (const [name, flags, expected] of cases) {
    it(`rejects ${name}`, async () => {
      const dataDir = path.join(await makeTempDir(), 'data')

      const result = await runCli(['start', '--data-dir', dataDir, ...loopback, ...flags])

      expect(result.code).toBe(2)
      expect(result.stderr).toContain(expected)
    })
  }

  it('rejects an API port in use', async () => {
    const server = net.createServer()
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const dataDir = path.join(await makeTempDir(), 'data')

    const result = await runCli(['start', '--data-dir', dataDir, ...loopback, '--api-port', String(port)])
    server.close()

    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`API port ${port} on 127.0.0.1 is already in use`)
  })
})

describe('emdx-node start', () => {
  it('prints its peer id and stops on SIGTERM', async () => {
    const dataDir = path.join(await makeTempDir(), 'data')
    const apiPort = await freePort()
    const { child, stdout } = await startProcess(dataDir, apiPort)

    const status = await runCli(['status', '--api-port', String(apiPort), '--json'])
    child.kill('SIGTERM')

    const peerId = (JSON.parse(status.stdout) as { peerId: string }).peerId
    expect(stdout()).toContain(`peer id:    ${peerId}`)
    expect(stdout()).toContain(`http://127.0.0.1:${apiPort}`)
    expect(await exitCode(child)).toBe(0)
  })

  it('lets one of two simultaneous starts win', async () => {
    const dataDir = path.join(await makeTempDir(), 'data')
    const ports = [await freePort(), await freePort()]

    const outcomes = await Promise.allSettled(ports.map(async port => await startProcess(dataDir, port)))

    const winners = outcomes.filter(outcome => outcome.status === 'fulfilled')
    const losers = outcomes.filter(outcome => outcome.status === 'rejected')
    expect(winners).toHaveLength(1)
    expect(losers).toHaveLength(1)
    expect(String(losers[0]?.reason)).toContain('exited with 1')
    expect(String(losers[0]?.reason)).toContain(`data directory ${dataDir} is in use by another emdx-node`)

    const winner = (winners[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof startProcess>>>).value
    const key = await readFile(path.join(dataDir, IDENTITY_FILE_NAME))
    winner.child.kill('SIGTERM')
    expect(await exitCode(winner.child)).toBe(0)

    const { child, stdout } = await startProcess(dataDir, await freePort())
    child.kill('SIGTERM')
    await exitCode(child)
    expect(stdout()).toContain(winner.stdout().match(/peer id: +(\S+)/)?.[1] ?? 'no peer id printed')
    expect(await readFile(path.join(dataDir, IDENTITY_FILE_NAME))).toEqual(key)
  })
})

describe('emdx-node status', () => {
  it('explains a node that is not running', async () => {
    const result = await runCli(['status', '--api-port', String(await freePort())])

    expect(result.code).toBe(1)
    expect(result.stderr).toContain('no emdx-node is running at http://127.0.0.1:')
  })
})
