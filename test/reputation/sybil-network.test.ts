import { describe, expect, it } from 'vitest'
import { STARTING_CREDIT_LINE, STARTING_GRANT } from '../../src/credits/admission.js'
import { RemoteStageError, runRemoteStage } from '../../src/stage/requester.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { COMMAND_NEEDS, honestRunner, startProvider } from '../support/scripted-network.js'
import { requesterContext } from '../support/stage.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'

// Ten fresh identities on the network vouch only for each other. They swap
// trust reports with an honest executor over /emdx/trust/1.0.0, and they
// mint credits by paying one of them for stages at a huge price. Then they
// buy stages from the honest executor over /emdx/stage/1.0.0 until it
// rejects them. They gain almost no global trust there, and the minted
// credits buy nothing beyond their grants and starting credit lines.

const SYBILS = 10
/** Millicredits per CPU second; the scripted runner reports 0.5 CPU seconds, so a stage costs 10 credits. */
const HONEST_PRICE = '20000,0,0'
const HONEST_STAGE_CREDITS = 10_000
/** The minter's price: each stage it runs for another Sybil costs 100 credits, the whole grant. */
const MINTER_PRICE = '200000,0,0'

async function connected (node: EmdxNode, other: EmdxNode): Promise<void> {
  await waitFor(() => node.libp2p.getPeers().some(peer => peer.equals(other.peerId)), 10_000, 'the nodes to connect')
}

async function runStage (requester: EmdxNode, executor: EmdxNode, maxCredits: number): Promise<unknown> {
  await connected(requester, executor)
  return await runRemoteStage(requesterContext(requester), executor.advertiser?.currentCapacityRecord() as CapacityRecord, {
    kind: 'command',
    stage: 'command',
    payload: { kind: 'command', command: ['echo', 'work'] },
    needs: COMMAND_NEEDS,
    timeoutMs: 10_000,
    maxCredits
  }, { signal: AbortSignal.timeout(30_000) }).catch((err: unknown) => err)
}

describe('Sybil ring on the network', () => {
  it('buys nothing beyond grants', async () => {
    const honest = await startProvider(honestRunner(), undefined, { price: HONEST_PRICE })
    const vouchers = [await startTestNode({ share: false, bootstrap: honest.addresses() }), await startTestNode({ share: false, bootstrap: honest.addresses() })]
    const sybils: EmdxNode[] = []
    for (let index = 0; index < SYBILS; index++) {
      sybils.push(index === 0
        ? await startProvider(honestRunner(), honest, { price: MINTER_PRICE })
        : await startTestNode({ share: false, bootstrap: [...honest.addresses(), ...sybils[0]!.addresses()] }))
    }
    const [minter, ...payers] = sybils as [EmdxNode, ...EmdxNode[]]

    // Honest peers vouch for each other; each Sybil vouches for all the others.
    for (const voucher of vouchers) {
      voucher.reputation.recordOutcome(honest.peerId.toString(), 'completed')
      vouchers.filter(other => other !== voucher).forEach(other => { voucher.reputation.recordOutcome(other.peerId.toString(), 'completed') })
      await connected(voucher, honest)
      await voucher.trustExchange.exchange(honest.peerId)
    }
    vouchers.forEach(voucher => { honest.reputation.recordOutcome(voucher.peerId.toString(), 'completed') })
    for (const sybil of sybils) {
      sybils.filter(other => other !== sybil).forEach(other => { sybil.reputation.recordOutcome(other.peerId.toString(), 'completed') })
      await connected(sybil, honest)
      await sybil.trustExchange.exchange(honest.peerId)
    }
    honest.reputation.recompute()

    // The other Sybils pay the minter their whole grant for stages it runs.
    for (const payer of payers) {
      const minted = await runStage(payer, minter, STARTING_GRANT)
      expect(minted instanceof Error ? minted.message : 'paid').toBe('paid')
    }
    // The executor records its side just after the requester has its result.
    await waitFor(() => minter.ledger.head().seq === payers.length - 1, 10_000, 'the minter to record every payment')
    const mintedBalance = minter.ledger.balance().balance

    const bought = new Map<EmdxNode, number>()
    let rejection: unknown
    for (const sybil of sybils) {
      for (;;) {
        const outcome = await runStage(sybil, honest, HONEST_STAGE_CREDITS)
        if (outcome instanceof Error) {
          rejection = outcome
          break
        }
        bought.set(sybil, (bought.get(sybil) ?? 0) + HONEST_STAGE_CREDITS)
      }
    }
    const sybilTrust = sybils.reduce((sum, sybil) => sum + honest.reputation.globalTrust(sybil.peerId.toString()), 0)
    const totalBought = [...bought.values()].reduce((sum, credits) => sum + credits, 0)

    expect(honest.reputation.snapshot().reports).toBe(SYBILS + vouchers.length)
    expect(honest.reputation.trustScore(vouchers[0]!.peerId.toString())).toBeGreaterThan(0.5)
    expect(sybilTrust).toBeLessThan(0.001)
    expect(Math.max(...sybils.map(sybil => honest.reputation.trustScore(sybil.peerId.toString())))).toBeLessThan(0.01)
    expect(mintedBalance).toBe(STARTING_GRANT * SYBILS)
    expect(bought.get(minter) ?? 0).toBeLessThanOrEqual(STARTING_GRANT + STARTING_CREDIT_LINE)
    expect(totalBought).toBeLessThanOrEqual(SYBILS * (STARTING_GRANT + STARTING_CREDIT_LINE))
    expect((rejection as RemoteStageError).reason).toBe('credit')
  }, 180_000)
})
