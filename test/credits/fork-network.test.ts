import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { RemoteStageError, runRemoteStage } from '../../src/stage/requester.js'
import { startTestNode, stopTestNode, waitFor } from '../support/nodes.js'
import { COMMAND_NEEDS, honestRunner, startProvider } from '../support/scripted-network.js'
import { requesterContext } from '../support/stage.js'
import { makeTempDir } from '../support/temp.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'

// A node that restores its data directory from a backup and spends again
// signs a second ledger entry at a used seq: a fork. The executor that
// keeps the first entry finds the fork when the node asks it for work
// again, and the proof travels over the network to a node that never met
// the forker, which verifies it and distrusts the forker too.

const run = promisify(execFile)

function recordOf (node: EmdxNode): CapacityRecord {
  return node.advertiser?.currentCapacityRecord() as CapacityRecord
}

async function runCommand (requester: EmdxNode, executor: EmdxNode): Promise<unknown> {
  await waitFor(() => requester.libp2p.getPeers().some(peer => peer.equals(executor.peerId)), 10_000, 'the requester to connect to the executor')
  return await runRemoteStage(requesterContext(requester), recordOf(executor), {
    kind: 'command',
    stage: 'command',
    payload: { kind: 'command', command: ['echo', 'spent'] },
    needs: COMMAND_NEEDS,
    timeoutMs: 10_000,
    maxCredits: 5_000
  }, { signal: AbortSignal.timeout(30_000) }).catch((err: unknown) => err)
}

describe('fork proof over the network', () => {
  it('makes a third node distrust forker', async () => {
    const first = await startProvider(honestRunner(), undefined)
    const second = await startProvider(honestRunner(), first)
    const third = await startProvider(honestRunner(), first)
    const dataDir = path.join(await makeTempDir('emdx-forker-'), 'data')
    const backup = `${dataDir}-backup`
    const forkerSettings = { dataDir, share: false, bootstrap: [...first.addresses(), ...second.addresses()] }

    const fresh = await startTestNode(forkerSettings)
    const forker = fresh.peerId.toString()
    await stopTestNode(fresh)
    await run('cp', ['-a', dataDir, backup])

    const before = await startTestNode(forkerSettings)
    const firstSpend = await runCommand(before, first)
    await stopTestNode(before)
    await run('rm', ['-rf', dataDir])
    await run('mv', [backup, dataDir])

    const restored = await startTestNode(forkerSettings)
    const secondSpend = await runCommand(restored, second)
    const exposed = await runCommand(restored, first)
    await waitFor(() => third.reputation.isForker(forker), 20_000, 'the third node to learn of the fork')
    const afterwards = await runCommand(restored, third)

    expect(firstSpend).not.toBeInstanceOf(Error)
    expect(secondSpend).not.toBeInstanceOf(Error)
    expect(exposed).toBeInstanceOf(RemoteStageError)
    expect((exposed as RemoteStageError).reason).toBe('distrusted')
    expect(first.reputation.isForker(forker)).toBe(true)
    expect(third.ledger.isForker(forker)).toBe(true)
    expect(third.reputation.isDistrusted(forker)).toBe(true)
    expect((await third.ledger.forkProofs()).map(proof => proof.owner)).toEqual([forker])
    expect(afterwards).toBeInstanceOf(RemoteStageError)
    expect((afterwards as RemoteStageError).reason).toBe('distrusted')
    expect(third.forkProofs.badMessages).toBe(0)
  })
})
