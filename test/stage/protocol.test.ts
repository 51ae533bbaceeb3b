import { describe, expect, it } from 'vitest'
import { MAX_SEGMENT_LINKS } from '../../src/credits/chain.js'
import { verifyReceipt } from '../../src/credits/receipt.js'
import { MAX_PAYLOAD_WITH_OFFER_BYTES } from '../../src/stage/messages.js'
import { runRemoteStage } from '../../src/stage/requester.js'
import { newJob, newSigner, signJob } from '../helpers/credits.js'
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

describe('payloads', () => {
  it('sends a large payload after the accept', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    await startExecutorService(executor, runner)
    const workspace = new Uint8Array(MAX_PAYLOAD_WITH_OFFER_BYTES + 1024).fill(7)

    const outcome = await runRemoteStage(requesterContext(requester), record, { ...commandTask, payload: { ...commandTask.payload, workspace } }, { signal: AbortSignal.timeout(20_000) })

    expect(outcome.result.stdout).toBe('ok')
    expect(runner.specs[0]?.input?.archivePath).toMatch(/input\.tar$/)
  })
})

describe('ledger segments', () => {
  it('sends the segment with the offer', async () => {
    const { executor, requester, record } = await pair()
    const { service } = await startExecutorService(executor, new ScriptedRunner(async () => succeeded('ok')))

    await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })
    const headBefore = requester.ledger.head().seq
    await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })

    expect(service.stats.accepted).toBe(2)
    expect(service.stats.ledgerRequests).toBe(0)
    expect((await executor.ledger.verifiedChain(requester.peerId.toString())).seq).toBe(headBefore)
  })

  it('requests a segment after a wrong hint', async () => {
    const { executor, requester, record } = await pair()
    const { service } = await startExecutorService(executor, new ScriptedRunner(async () => succeeded('ok')))
    await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })
    // The requester wrongly believes the executor verified its first entry,
    // which the executor has only as a witness.
    requester.ledger.noteVerifiedBy(executor.peerId.toString(), 1)

    const outcome = await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })

    expect(outcome.result.stdout).toBe('ok')
    expect(service.stats.ledgerRequests).toBe(1)
    expect((await executor.ledger.verifiedChain(requester.peerId.toString())).seq).toBe(0)
  })

  it('verifies a chain longer than one segment in parts', async () => {
    const { executor, requester, record } = await pair()
    const { service } = await startExecutorService(executor, new ScriptedRunner(async () => succeeded('ok')))
    const payer = await newSigner()
    const entries = MAX_SEGMENT_LINKS + 200
    for (let index = 0; index < entries; index++) {
      // The requester earned these from a payer no one trusts, so they do
      // not raise its credit, but every one of them must verify.
      const job = newJob(requester.signer, payer, 1)
      await requester.ledger.append(signJob(job, requester.signer, payer), job.terms)
    }

    const first = await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(120_000) })
    const afterFirst = (await executor.ledger.verifiedChain(requester.peerId.toString())).seq
    const second = await runRemoteStage(requesterContext(requester), record, commandTask, { signal: AbortSignal.timeout(20_000) })

    expect(first.result.stdout).toBe('ok')
    expect(second.result.stdout).toBe('ok')
    expect(afterFirst).toBe(entries - 1)
    // Two parts for the first offer; the second offer brought its own segment.
    expect(service.stats.ledgerRequests).toBe(2)
    expect((await executor.ledger.verifiedChain(requester.peerId.toString())).seq).toBe(entries)
  }, 180_000)
})
