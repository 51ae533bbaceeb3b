import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { stat } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { DataDirLockedError, PortInUseError } from '../../src/node/errors.js'
import { IDENTITY_FILE_NAME } from '../../src/node/identity.js'
import { startTestNode, stopTestNode, waitFor } from '../support/nodes.js'
import { makeTempDir } from '../support/temp.js'
import type { NodeStatus, PeerSummary } from '../../src/node/node.js'

describe('node lifecycle', () => {
  it('keeps its peer id across a restart', async () => {
    const dataDir = path.join(await makeTempDir(), 'data')
    const first = await startTestNode({ dataDir })
    const peerId = first.peerId.toString()
    await stopTestNode(first)

    const second = await startTestNode({ dataDir })

    expect(second.peerId.toString()).toBe(peerId)
    expect((await stat(path.join(dataDir, IDENTITY_FILE_NAME))).mode & 0o777).toBe(0o600)
  })

  it('rejects a second node on one data directory', async () => {
    const first = await startTestNode()

    const error = await startTestNode({ dataDir: first.config.dataDir }).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(DataDirLockedError)
    expect((error as Error).message).toContain(first.config.dataDir)
    expect((error as Error).message).toContain(`pid ${process.pid}`)
    expect(first.status().peerId).toBe(first.peerId.toString())
  })

  it('rejects an API port in use', async () => {
    const first = await startTestNode()

    const error = await startTestNode({ apiPort: first.api.port }).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(PortInUseError)
    expect((error as Error).message).toContain(`API port ${first.api.port}`)
    expect((error as Error).message).toContain('--api-port')
  })

  it('rejects a libp2p port in use', async () => {
    const first = await startTestNode()
    const port = Number(first.addresses()[0]?.split('/')[4])

    const error = await startTestNode({ port }).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(PortInUseError)
    expect((error as Error).message).toContain(`port ${port}`)
    expect((error as Error).message).toContain('--port')
  })

  it('releases the data directory after a failed start', async () => {
    const first = await startTestNode()
    const dataDir = path.join(await makeTempDir(), 'data')
    await startTestNode({ dataDir, apiPort: first.api.port }).catch(() => {})

    const retry = await startTestNode({ dataDir })

    expect(retry.peerId).toBeDefined()
  })

  it('reports status and peers over HTTP', async () => {
    const a = await startTestNode({ shareCpu: '1', shareMem: '256m' })
    const b = await startTestNode({ bootstrap: a.addresses() })
    await waitFor(() => a.libp2p.getPeers().length === 1 && a.routingTableSize() === 1, 20_000, 'b to join a')

    const status = await (await fetch(`${a.api.url}/api/v1/status`)).json() as NodeStatus
    const { peers } = await (await fetch(`${a.api.url}/api/v1/peers`)).json() as { peers: PeerSummary[] }

    expect(status.peerId).toBe(a.peerId.toString())
    expect(status.connectedPeers).toBe(a.libp2p.getPeers().length)
    expect(status.routingTableSize).toBe(a.routingTableSize())
    expect(status.addresses).toEqual(a.addresses())
    expect(status.share.cpus).toBe(1)
    expect(status.share.memoryBytes).toBe(256 * 1024 ** 2)
    // Without a sandbox (tests skip it) the node shares nothing.
    expect(status.share.enabled).toBe(false)
    expect(status.sandbox.backend).toBe('none')
    expect(peers.map(peer => peer.peerId)).toEqual([b.peerId.toString()])
  })
})

describe('node shutdown', () => {
  it('leaves no open handles', async () => {
    // A child process that starts and stops a node and then does nothing:
    // Node.js exits on its own only when no handle is left open.
    const dataDir = path.join(await makeTempDir(), 'data')
    const script = fileURLToPath(new URL('../support/start-stop.mjs', import.meta.url))
    const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)

    const code = await new Promise<number | null>(resolve => child.on('close', resolve))
    clearTimeout(timer)

    expect(output).toContain('stopped')
    expect(code).toBe(0)
  })
})

describe('API host check', () => {
  it('rejects a foreign Host header', async () => {
    const node = await startTestNode()

    const status = await new Promise<number | undefined>((resolve, reject) => {
      const outgoing = request({ host: '127.0.0.1', port: node.api.port, path: '/api/v1/status', headers: { host: `rebound.example:${node.api.port}` } }, (response) => {
        response.resume()
        resolve(response.statusCode)
      })
      outgoing.on('error', reject)
      outgoing.end()
    })
    const allowed = await fetch(`http://localhost:${node.api.port}/api/v1/status`)

    expect(status).toBe(403)
    expect(allowed.status).toBe(200)
  })
})
