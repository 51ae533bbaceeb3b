import { spawn } from 'node:child_process'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { EMDX_NODE_BIN, runCli } from '../support/cli.js'
import { makeTempDir } from '../support/temp.js'
import type { NodeStatus, PeerSummary } from '../../src/node/node.js'

async function portIsFree (port: number): Promise<boolean> {
  const server = net.createServer()
  return await new Promise(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/** Finds a base port with `count` free ports from it on, for the devnet APIs. */
async function freePortRange (count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000)
    const ports = Array.from({ length: count }, (_, index) => base + index)
    if ((await Promise.all(ports.map(portIsFree))).every(Boolean)) {
      return base
    }
  }
  throw new Error('no free port range found')
}

describe('emdx-node devnet', () => {
  it('forms a network of three nodes and stops them all', async () => {
    const baseDir = await makeTempDir()
    const apiPort = await freePortRange(3)
    const devnet = spawn(process.execPath, [EMDX_NODE_BIN, 'devnet', '--nodes', '3', '--base-dir', baseDir, '--api-port', String(apiPort), '--share-mem', '256m'])
    let output = ''
    devnet.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    devnet.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`devnet not ready in 60 s:\n${output}`)) }, 60_000)
      devnet.stdout.on('data', () => {
        if (output.includes('The devnet is running')) {
          clearTimeout(timer)
          resolve()
        }
      })
      devnet.on('exit', (code) => { reject(new Error(`devnet exited with ${code}:\n${output}`)) })
    })

    const statuses: NodeStatus[] = []
    const peerLists: string[][] = []
    for (let index = 0; index < 3; index++) {
      const port = String(apiPort + index)
      statuses.push(JSON.parse((await runCli(['status', '--api-port', port, '--json'])).stdout) as NodeStatus)
      const { peers } = JSON.parse((await runCli(['peers', '--api-port', port, '--json'])).stdout) as { peers: PeerSummary[] }
      peerLists.push(peers.map(peer => peer.peerId))
    }
    const readable = await runCli(['peers', '--api-port', String(apiPort + 1)])

    devnet.kill('SIGINT')
    const code = await new Promise<number | null>(resolve => devnet.on('exit', resolve))

    for (let index = 0; index < 3; index++) {
      const others = statuses.filter((_, other) => other !== index).map(status => status.peerId).sort()
      expect(peerLists[index]?.sort()).toEqual(others)
    }
    expect(readable.stdout).toContain('2 peers')
    expect(output).toContain(statuses[0]?.peerId)
    expect(code).toBe(0)
    for (let index = 0; index < 3; index++) {
      expect(await portIsFree(apiPort + index)).toBe(true)
    }
  })

  it('refuses API ports that are in use', async () => {
    const server = net.createServer()
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const baseDir = await makeTempDir()

    const result = await runCli(['devnet', '--nodes', '1', '--base-dir', baseDir, '--api-port', String(port)])
    server.close()

    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`API port ${port} on 127.0.0.1 is in use`)
    expect(result.stdout).not.toContain('The devnet is running')
  })
})
