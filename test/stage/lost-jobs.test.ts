import { randomBytes } from 'node:crypto'
import Docker from 'dockerode'
import { lpStream } from '@libp2p/utils'
import { afterEach, describe, expect, it } from 'vitest'
import { LABEL_NODE } from '../../src/exec/docker/profile.js'
import { silentLogger } from '../../src/node/logger.js'
import { LOST_JOBS_PROTOCOL, reportLostJobs, RunningJobs } from '../../src/stage/lost-jobs.js'
import { missingBackend, reportMissing, TEST_IMAGE, TEST_ROOTFS } from '../exec/support.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { startNodeProcess, stopProcess } from '../support/processes.js'
import { COMMAND_NEEDS, waitForProviders } from '../support/scripted-network.js'

// An executor killed with SIGKILL while a stage runs sends the requester a
// notice after its restart that the job is lost, and the notice changes no
// trust. Also the requester's checks of notices.

const missing = await missingBackend('docker')
const PROVIDER_ARGS = ['--runtime', 'runc', '--image', `${TEST_IMAGE}=${TEST_ROOTFS}`, '--share-mem', '1g']
const killedNodes: string[] = []

afterEach(async () => {
  // A killed node leaves its containers; its next start removes them, but not the last one's.
  const docker = new Docker()
  for (const node of killedNodes.splice(0)) {
    for (const container of await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${node}`] } })) {
      await docker.getContainer(container.Id).remove({ force: true }).catch(() => {})
    }
  }
})

describe.runIf(missing === undefined)('lost jobs after executor restart', () => {
  it('reports killed job to requester', async () => {
    const provider = await startNodeProcess(PROVIDER_ARGS)
    const providerId = provider.status.peerId
    killedNodes.push(providerId)
    const requester = await startTestNode({ bootstrap: provider.status.addresses, share: false })
    await waitForProviders(requester, 1)

    let jobId: string | undefined
    const failure = await requester.requesting.dispatcher.dispatch({
      kind: 'command',
      stage: 'command',
      payload: { kind: 'command', command: ['sh', '-c', 'echo started; sleep 100'] },
      needs: COMMAND_NEEDS,
      timeoutMs: 120_000,
      maxCredits: 10_000
    }, COMMAND_NEEDS, {
      signal: AbortSignal.timeout(150_000),
      onEvent: (event) => {
        if (event.type === 'dispatched') {
          jobId = event.jobId
        }
        if (event.type === 'progress' && provider.child.signalCode === null) {
          provider.child.kill('SIGKILL')
        }
      }
    }).catch((err: unknown) => err)
    await stopProcess(provider, 'SIGKILL')
    const scoreAfterFailure = requester.reputation.localScore(providerId)

    await startNodeProcess(PROVIDER_ARGS, { dataDir: provider.dataDir })
    await waitFor(() => requester.requesting.lostJobs.received.length > 0, 90_000, 'the lost-job notice')
    const [notice] = requester.requesting.lostJobs.received

    expect(failure).toBeInstanceOf(Error)
    expect(jobId).toBeDefined()
    expect(notice?.executor).toBe(providerId)
    expect(notice?.jobIds).toEqual([jobId])
    expect(requester.reputation.localScore(providerId)).toBe(scoreAfterFailure)
    expect(requester.requesting.lostJobs.badMessages).toBe(0)
  }, 240_000)
})

if (missing !== undefined) {
  describe('lost jobs after executor restart', () => {
    reportMissing('docker', missing)
  })
}

describe('lost-job notices', () => {
  it('ignores jobs sent elsewhere', async () => {
    const requester = await startTestNode({ share: false })
    const stranger = await startTestNode({ share: false, bootstrap: requester.addresses() })
    await waitFor(() => stranger.libp2p.getPeers().length === 1, 10_000, 'the peers to connect')
    const jobs = new RunningJobs(stranger.database, silentLogger())
    const jobId = randomBytes(16).toString('hex')
    await jobs.add(jobId, requester.peerId.toString())

    await reportLostJobs(await jobs.list(), { libp2p: stranger.libp2p, jobs, logger: silentLogger(), delaysMs: [0] })

    expect(requester.requesting.lostJobs.received).toEqual([])
    expect(requester.requesting.lostJobs.badMessages).toBe(0)
    expect(await jobs.list()).toEqual([])
  })

  it('resets a garbage notice', async () => {
    const requester = await startTestNode({ share: false })
    const sender = await startTestNode({ share: false, bootstrap: requester.addresses() })
    await waitFor(() => sender.libp2p.getPeers().length === 1, 10_000, 'the peers to connect')

    const stream = await sender.libp2p.dialProtocol(requester.peerId, LOST_JOBS_PROTOCOL)
    await lpStream(stream).write(new TextEncoder().encode('not a notice'))
    await waitFor(() => requester.requesting.lostJobs.badMessages === 1, 10_000, 'the stream to be reset')

    expect(requester.requesting.lostJobs.received).toEqual([])
  })
})
