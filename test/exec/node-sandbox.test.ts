import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { formatStatus } from '../../src/cli/commands/status.js'
import { loadConfig } from '../../src/node/config.js'
import { EmdxNode } from '../../src/node/node.js'
import { silentLogger } from '../../src/node/logger.js'
import { missingBackend, reportMissing, TEST_IMAGE, TEST_ROOTFS } from './support.js'
import type { NodeStatus } from '../../src/node/node.js'

const limits = { cpus: 2, memoryBytes: 8 * 1024 ** 3 }

async function startNode (flags: Record<string, unknown>): Promise<{ node: EmdxNode, dataDir: string }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-node-sandbox-'))
  const config = await loadConfig(dataDir, { apiPort: '0', port: '0', listenHost: '127.0.0.1', mdns: false, image: [`${TEST_IMAGE}=${TEST_ROOTFS}`], ...flags }, limits)
  const node = await EmdxNode.start({ config, logger: silentLogger() })
  return { node, dataDir }
}

describe('node sandbox status', async () => {
  const missing = await missingBackend('docker')
  if (missing !== undefined) {
    reportMissing('docker', missing)
    return
  }

  const started: Array<{ node: EmdxNode, dataDir: string }> = []
  afterEach(async () => {
    for (const { node, dataDir } of started.splice(0)) {
      await node.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('status API reports the Docker sandbox', async () => {
    const entry = await startNode({ runtime: 'runc' })
    started.push(entry)
    const response = await fetch(`${entry.node.api.url}/api/v1/status`)
    const status = await response.json() as NodeStatus
    expect(status.sandbox).toMatchObject({ backend: 'docker', runtime: 'runc', isolation: 'container' })
    expect(status.share.enabled).toBe(true)
    expect(formatStatus(status)).toContain('sandbox:')
    expect(formatStatus(status)).toContain('docker (runc, container isolation)')
    const result = await entry.node.sandbox.executor!.run({ jobId: 'node-stage', command: ['echo', 'from the node'] })
    expect(result.stdout).toBe('from the node\n')
  })

  it('node without a sandbox starts and shares nothing', async () => {
    const previous = process.env.DOCKER_HOST
    process.env.DOCKER_HOST = `unix://${path.join(os.tmpdir(), 'emdx-no-such-docker.sock')}`
    try {
      const entry = await startNode({ runtime: 'runc' })
      started.push(entry)
      const status = entry.node.status()
      expect(status.sandbox.backend).toBe('none')
      expect(status.sandbox.reason).toContain('no Docker daemon responds')
      expect(status.sandbox.reason).toContain('Start the Docker daemon')
      expect(status.share.enabled).toBe(false)
      expect(entry.node.sandbox.executor).toBeUndefined()
    } finally {
      process.env.DOCKER_HOST = previous
    }
  })

  it('--no-share reports no sandbox', async () => {
    const entry = await startNode({ share: false })
    started.push(entry)
    expect(entry.node.status().sandbox).toMatchObject({ backend: 'none', reason: 'sharing is off (--no-share)' })
  })

  it('config rejects an unknown runtime', async () => {
    await expect(loadConfig(os.tmpdir(), { runtime: 'kata' }, limits)).rejects.toThrow(/invalid --runtime "kata": expected one of auto, runsc, runc, bwrap/)
  })

  it('config rejects egress without a port', async () => {
    await expect(loadConfig(os.tmpdir(), { agentEgress: ['api.anthropic.com'] }, limits)).rejects.toThrow(/expected HOST:PORT/)
  })

  it('config rejects a relative image folder', async () => {
    await expect(loadConfig(os.tmpdir(), { image: ['img=rootfs'] }, limits)).rejects.toThrow(/NAME=ABSOLUTE_ROOTFS_FOLDER/)
  })
})
