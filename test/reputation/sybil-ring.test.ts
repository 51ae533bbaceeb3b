import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BACKED_PAYER_SCORE, STARTING_CREDIT_LINE, STARTING_GRANT, decideAdmission } from '../../src/credits/admission.js'
import { Reputation } from '../../src/reputation/reputation.js'
import { newSigner, openTestNode, settleJob } from '../helpers/credits.js'
import type { TestNode } from '../helpers/credits.js'
import type { Signer } from '../../src/records/signature.js'

// Ten fresh identities that vouch only for each other, in a network of
// twenty honest peers: they gain almost no global trust, and receipts they
// sign each other (minting credits) buy no work beyond their grants.

const HONEST = 20
const SYBILS = 10
/** 10 credits at the test price of 100 millicredits per CPU second. */
const JOB_CPU_SECONDS = 100
const JOB_PRICE = 10_000

function reportOf (reporter: Signer, trusted: string[]): Uint8Array {
  const reputation = new Reputation({ self: reporter.peerId, bootstrapPeers: [] })
  for (const peer of trusted) {
    reputation.recordOutcome(peer, 'completed')
  }
  return reputation.createReport(reporter)
}

describe('Sybil ring', () => {
  let honest: Signer[]
  let sybils: TestNode[]
  let executor: TestNode
  let observer: Reputation

  beforeAll(async () => {
    honest = await Promise.all(Array.from({ length: HONEST }, async () => await newSigner()))
    sybils = await Promise.all(Array.from({ length: SYBILS }, async () => await openTestNode()))
    executor = await openTestNode(honest[0])
    observer = new Reputation({ self: honest[0]!.peerId, bootstrapPeers: honest.slice(1, 4).map(signer => signer.peerId) })

    for (let index = 1; index < HONEST; index++) {
      const friends = [1, 2, 3, 5, 8].map(step => honest[(index + step) % HONEST]!.peerId)
      observer.acceptReport(reportOf(honest[index]!, friends))
    }
    for (const sybil of sybils) {
      const ring = sybils.filter(other => other !== sybil).map(other => other.signer.peerId)
      observer.acceptReport(reportOf(sybil.signer, ring))
    }
    observer.recompute()
  })

  afterAll(async () => {
    for (const each of [...sybils, executor]) {
      await each.db.cleanup()
    }
  })

  it('gains almost no global trust', () => {
    const sybilTrust = sybils.reduce((sum, sybil) => sum + observer.globalTrust(sybil.signer.peerId), 0)
    const scores = sybils.map(sybil => observer.trustScore(sybil.signer.peerId))

    expect(sybilTrust).toBeLessThan(0.001)
    expect(Math.max(...scores)).toBeLessThan(0.01)
  })

  it('buys no work beyond grants', async () => {
    // The others sign receipts for huge jobs that the first never ran.
    const [minter, ...payers] = sybils
    for (const payer of payers) {
      await settleJob(minter!, payer, 1_000_000)
    }
    const minted = minter!.ledger.balance().balance

    let bought = 0
    for (const sybil of sybils) {
      const peer = sybil.signer.peerId
      let { state } = await executor.ledger.importSegment(await sybil.ledger.exportSegment())
      for (;;) {
        const decision = decideAdmission({
          chain: state,
          price: JOB_PRICE,
          trustScore: observer.trustScore(peer),
          distrusted: observer.isDistrusted(peer),
          isBackedPayer: payer => payer === executor.signer.peerId || observer.trustScore(payer) >= BACKED_PAYER_SCORE
        })
        if (!decision.admitted) {
          break
        }
        await settleJob(executor, sybil, JOB_CPU_SECONDS)
        bought += JOB_PRICE
        state = (await executor.ledger.importSegment(await sybil.ledger.exportSegment(state.seq + 1))).state
      }
    }

    expect(minted).toBeGreaterThan(100 * STARTING_GRANT)
    expect(bought).toBeLessThanOrEqual(SYBILS * (STARTING_GRANT + STARTING_CREDIT_LINE))
  })
})
