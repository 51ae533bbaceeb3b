import { spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { afterEach } from 'vitest'
import { EMDX_NODE_BIN } from './cli.js'
import { makeTempDir } from './temp.js'
import type { NodeStatus } from '../../src/node/node.js'
import type { ChildProcess } from 'node:child_process'

/** A real `emdx-node start` process on loopback, with its data directory and API. */
export interface NodeProcess {
  child: ChildProcess
  dataDir: string
  apiPort: number
  apiUrl: string
  status: NodeStatus
  /** Everything the process wrote, for failure messages. */
  output: () => string
}

const started = new Set<ChildProcess>()

export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}

/**
 * Starts `emdx-node start` with loopback settings plus `args`, and resolves
 * once its API responds. The process is killed after the test if it still runs.
 */
export async function startNodeProcess (args: string[], options: { dataDir?: string, env?: NodeJS.ProcessEnv, apiPort?: number } = {}): Promise<NodeProcess> {
  const dataDir = options.dataDir ?? path.join(await makeTempDir('emdx-process-'), 'data')
  const apiPort = options.apiPort ?? await freePort()
  const child = spawn(process.execPath, [EMDX_NODE_BIN, 'start', '--data-dir', dataDir, '--api-port', String(apiPort), '--port', '0', '--listen-host', '127.0.0.1', '--no-mdns', '--log-format', 'json', ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  started.add(child)
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })

  const apiUrl = `http://127.0.0.1:${apiPort}`
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`emdx-node exited with ${child.exitCode} while starting:\n${output.slice(-3000)}`)
    }
    try {
      const response = await fetch(`${apiUrl}/api/v1/status`, { signal: AbortSignal.timeout(1000) })
      if (response.ok) {
        return { child, dataDir, apiPort, apiUrl, status: await response.json() as NodeStatus, output: () => output }
      }
    } catch {
      // Not listening yet.
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  child.kill('SIGKILL')
  throw new Error(`emdx-node did not start within 60 s:\n${output.slice(-3000)}`)
}

/** Sends a signal and waits for the process to exit. */
export async function stopProcess (node: NodeProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) {
    return node.child.exitCode
  }
  const exited = new Promise<number | null>(resolve => node.child.once('exit', code => { resolve(code) }))
  node.child.kill(signal)
  return await exited
}

afterEach(async () => {
  const children = [...started]
  started.clear()
  await Promise.all(children.map(async child => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
  }))
})
