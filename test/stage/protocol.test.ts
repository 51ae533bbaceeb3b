import { describe, expect, it } from 'vitest'
import { verifyReceipt } from '../../src/credits/receipt.js'
import { runRemoteStage } from '../../src/stage/requester.js'
import { ManualCapacity } from '../support/capacity.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { requesterContext, ScriptedRunner, startExecutorService, succeeded } from '../support/stage.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'

async function pair (): Promise<{ executor: EmdxNode, requester: EmdxNode, record: CapacityRecord }> {
  const executor = await startTestNode({}, { capacity: new ManualCapacity(), advertiserTiming: { debounceMs: 50, retryMs: 100 } })
  const requester = await startTestNode({ bootstrap: executor.addresses(), share: false })
  await waitFor(() => requester.libp2p.getPeers().length === 1, 10_000, 'the requester to connect')
  return { executor, requester, record: executor.advertiser?.currentCapacityRecord() as CapacityRecord }
}

const commandTask = {
  kind: 'command' as const,
  stage: 'test',
  payload: { kind: 'command' as const, command: ['echo', 'hello'] },
  needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 },
  timeoutMs: 10_000,
  maxCredits: 10_000
}

describe('stage protocol', () => {
  it('runs a command stage and both sign the receipt', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async spec => succeeded(`ran ${spec.command?.join(' ')}`))
    await startExecutorService(executor, runner)

    const outcome = await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })

    expect(outcome.result.stdout).toBe('ran echo hello')
    expect(verifyReceipt(outcome.receipt, { countersigned: true }).jobId).toBe(outcome.jobId)
    await waitFor(async () => (await executor.ledger.recent(10)).length === 1, 5000, 'the executor to record the receipt')
    const [executorRecord] = await executor.ledger.recent(10)
    const [requesterRecord] = await requester.ledger.recent(10)
    expect(executorRecord?.receipt).toEqual(outcome.receipt)
    expect(requesterRecord?.receipt).toEqual(outcome.receipt)
    expect(executor.ledger.balance().earned).toBe(outcome.receiptBody.credits)
    expect(requester.ledger.balance().spent).toBe(outcome.receiptBody.credits)
  })
})
