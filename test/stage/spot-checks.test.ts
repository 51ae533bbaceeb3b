import { describe, expect, it } from 'vitest'
import { startTestNode } from '../support/nodes.js'
import { cheatingRunner, dispatchAgentStage, dispatchCommandStage, honestRunner, startProvider, waitForProviders } from '../support/scripted-network.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { ScriptedRunner } from '../support/stage.js'

// A requester's dispatcher on real nodes over loopback: it spot checks
// providers with canaries and duplicate runs through the stage protocol,
// and sends real stages to providers that passed its checks first.

/** The price that makes a provider rank first: far below the others'. */
const CHEAP = '1,1,1'
const DEAR = '50,50,50'
/**
 * What a cheater shares: twice the CPUs of the others, so that it ranks
 * first by a margin that round-trip times cannot close.
 */
const CHEATER_SETTINGS = { price: CHEAP, shareCpu: '2' }

async function requesterFor (providers: EmdxNode[], settings: { spotCheckShare?: string } = {}): Promise<EmdxNode> {
  const requester = await startTestNode({ share: false, bootstrap: providers[0]?.addresses() ?? [], ...settings })
  await waitForProviders(requester, providers.length)
  return requester
}

/** Job ids of the receipts in the node's ledger with the counterparty as executor. */
async function paidTo (requester: EmdxNode, executor: EmdxNode): Promise<string[]> {
  const records = await requester.ledger.recent(1000)
  return records.filter(record => record.receiptBody.executor === executor.peerId.toString()).map(record => record.receiptBody.jobId)
}

function commandsRun (runner: ScriptedRunner): number {
  return runner.specs.filter(spec => spec.command !== undefined).length
}

describe('spot checks in dispatch', () => {
  it('stops work to canary cheater', async () => {
    const cheat = cheatingRunner('sha256sum')
    const first = await startProvider(honestRunner(), undefined, { price: DEAR })
    const cheater = await startProvider(cheat, first, CHEATER_SETTINGS)
    const second = await startProvider(honestRunner(), first, { price: DEAR })
    const requester = await requesterFor([first, cheater, second])

    const outcomes = []
    for (let stage = 0; stage < 6; stage++) {
      outcomes.push(await dispatchAgentStage(requester, `idea ${stage}`))
    }
    const honest = [first.peerId.toString(), second.peerId.toString()]

    // The cheater ranked first, so it got the first canary, and nothing after it.
    expect(cheat.specs).toHaveLength(1)
    expect(commandsRun(cheat)).toBe(1)
    expect(requester.reputation.isDistrusted(cheater.peerId.toString())).toBe(true)
    expect(requester.reputation.localScore(cheater.peerId.toString())).toBeLessThan(0)
    expect(await paidTo(requester, cheater)).toEqual([])
    for (const [index, outcome] of outcomes.entries()) {
      expect(honest).toContain(outcome.executor)
      expect(outcome.result.agent?.output).toContain(`idea ${index}`)
    }
  })

  it('compares command stage on two providers', async () => {
    const firstRunner = honestRunner()
    const secondRunner = honestRunner()
    const first = await startProvider(firstRunner, undefined)
    const second = await startProvider(secondRunner, first)
    const requester = await requesterFor([first, second])

    const outcome = await dispatchCommandStage(requester, ['echo', 'same on both'])

    expect(outcome.result.stdout).toBe('same on both\n')
    expect(commandsRun(firstRunner)).toBe(1)
    expect(commandsRun(secondRunner)).toBe(1)
    expect(await paidTo(requester, first)).toHaveLength(1)
    expect(await paidTo(requester, second)).toHaveLength(1)
    expect(requester.requesting.spotChecks.checksPassed(first.peerId.toString())).toBe(1)
    expect(requester.requesting.spotChecks.checksPassed(second.peerId.toString())).toBe(1)
  })

  it('catches wrong duplicate result', async () => {
    const cheat = cheatingRunner('marker')
    const first = await startProvider(honestRunner(), undefined, { price: DEAR })
    const cheater = await startProvider(cheat, first, CHEATER_SETTINGS)
    const second = await startProvider(honestRunner(), first, { price: DEAR })
    const requester = await requesterFor([first, cheater, second])

    const outcome = await dispatchCommandStage(requester, ['echo', 'marker'])
    const honestPaid = [...await paidTo(requester, first), ...await paidTo(requester, second)]

    expect(outcome.result.stdout).toBe('marker\n')
    expect(outcome.executor).not.toBe(cheater.peerId.toString())
    expect(commandsRun(cheat)).toBe(1)
    expect(requester.reputation.isDistrusted(cheater.peerId.toString())).toBe(true)
    expect(await paidTo(requester, cheater)).toEqual([])
    // The honest run that waited for the tie-break is paid after it, the other on its stream.
    expect(honestPaid).toHaveLength(2)
    expect(first.ledger.balance().earned + second.ledger.balance().earned).toBeGreaterThan(0)
  })

  it('prefers verified provider over cheaper', async () => {
    const verifiedRunner = honestRunner()
    const cheaperRunner = honestRunner()
    const verified = await startProvider(verifiedRunner, undefined, { price: DEAR })
    const cheaper = await startProvider(cheaperRunner, verified, { price: CHEAP })
    const requester = await requesterFor([verified, cheaper], { spotCheckShare: '0' })
    const policy = requester.requesting.spotChecks
    for (let check = 0; check < policy.probationChecks; check++) {
      policy.recordCheck(verified.peerId.toString(), true)
    }

    const outcome = await dispatchAgentStage(requester, 'an idea')

    expect(outcome.executor).toBe(verified.peerId.toString())
    expect(verifiedRunner.specs).toHaveLength(1)
    expect(cheaperRunner.specs).toHaveLength(0)
  })
})
