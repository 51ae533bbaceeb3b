import Docker from 'dockerode'
import { afterEach, describe, expect, it } from 'vitest'
import { LABEL_NODE } from '../../src/exec/docker/profile.js'
import { RemoteStageError, runRemoteStage } from '../../src/stage/requester.js'
import { missingBackend, reportMissing, TEST_IMAGE, TEST_ROOTFS } from '../exec/support.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { startNodeProcess, stopProcess } from '../support/processes.js'
import { requesterContext } from '../support/stage.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { NodeProcess } from '../support/processes.js'

const missing = await missingBackend('docker')
const STAGE_TIMEOUT_MS = 120_000
const killedNodes: string[] = []

/** Setup of a provider process with a real Docker sandbox, and an in-process requester that has its record. */
async function providerAndRequester (): Promise<{ provider: NodeProcess, requester: EmdxNode, record: CapacityRecord }> {
  const provider = await startNodeProcess(['--runtime', 'runc', '--image', `${TEST_IMAGE}=${TEST_ROOTFS}`, '--share-mem', '1g'])
  killedNodes.push(provider.status.peerId)
  const requester = await startTestNode({ bootstrap: provider.status.addresses, share: false })
  let record: CapacityRecord | undefined
  await waitFor(async () => {
    const found = await requester.discovery.find({ cpus: 1, memoryBytes: 256 * 1024 ** 2 }, { count: 1, signal: AbortSignal.timeout(5000) })
    record = found.find(candidate => candidate.peerId === provider.status.peerId)?.record
    return record !== undefined
  }, 30_000, 'the requester to find the provider')
  return { provider, requester, record: record as CapacityRecord }
}

/** Runs a long command remotely, and once it runs, does `act` to the provider; resolves with the error and the time it took to come. */
async function failDuringStage (requester: EmdxNode, record: CapacityRecord, act: () => void): Promise<{ error: unknown, afterMs: number }> {
  let actedAt = 0
  let progress = 0
  const error = await runRemoteStage(requesterContext(requester), record, {
    kind: 'command',
    stage: 'command',
    payload: { kind: 'command', command: ['sh', '-c', 'echo started; sleep 100'] },
    needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 },
    timeoutMs: STAGE_TIMEOUT_MS,
    maxCredits: 10_000
  }, {
    onProgress: () => {
      progress++
      if (actedAt === 0) {
        actedAt = Date.now()
        act()
      }
    }
  }).catch((err: unknown) => err)
  expect(progress).toBeGreaterThan(0)
  return { error, afterMs: Date.now() - actedAt }
}

afterEach(async () => {
  // A killed node leaves its containers; its next start would remove them.
  const docker = new Docker()
  for (const node of killedNodes.splice(0)) {
    for (const container of await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${node}`] } })) {
      await docker.getContainer(container.Id).remove({ force: true }).catch(() => {})
    }
  }
})

describe.runIf(missing === undefined)('provider death', () => {
  it('is noticed at once when killed', async () => {
    const { provider, requester, record } = await providerAndRequester()

    const { error, afterMs } = await failDuringStage(requester, record, () => { provider.child.kill('SIGKILL') })

    expect(error).toBeInstanceOf(RemoteStageError)
    expect(['protocol', 'silent']).toContain((error as RemoteStageError).failure)
    // The heartbeat deadline (3 missed beats of 2 s) bounds the wait, far below the stage timeout.
    expect(afterMs).toBeLessThan(STAGE_TIMEOUT_MS / 4)
  }, 180_000)

  it('is noticed within the heartbeats when frozen', async () => {
    const { provider, requester, record } = await providerAndRequester()

    const { error, afterMs } = await failDuringStage(requester, record, () => { provider.child.kill('SIGSTOP') })
    await stopProcess(provider, 'SIGKILL')

    expect(error).toBeInstanceOf(RemoteStageError)
    expect((error as RemoteStageError).failure).toBe('silent')
    expect(afterMs).toBeLessThan(STAGE_TIMEOUT_MS / 4)
  }, 180_000)
})

if (missing !== undefined) {
  describe('provider death', () => {
    reportMissing('docker', missing)
  })
}
