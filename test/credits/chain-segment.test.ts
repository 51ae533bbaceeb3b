import { describe, expect, it } from 'vitest'
import { STARTING_CREDIT_LINE, STARTING_GRANT, backedBalance, creditLine, decideAdmission } from '../../src/credits/admission.js'
import { chainBalance, decodeChainSegment, encodeChainSegment, verifyChainSegment } from '../../src/credits/chain.js'
import { decodeLedgerEntryBody, ledgerEntryHash, signLedgerEntry } from '../../src/credits/ledger-entry.js'
import { newSigner, settleJob, useTestNodes } from '../helpers/credits.js'

const node = useTestNodes()

describe('chain segment', () => {
  it('gives the owner balance', async () => {
    const alice = await node()
    const bob = await node()
    await settleJob(alice, bob, 10)
    await settleJob(bob, alice, 4)

    const segment = decodeChainSegment(encodeChainSegment(await alice.ledger.exportSegment()))
    const state = verifyChainSegment(segment)

    expect(chainBalance(state, STARTING_GRANT)).toBe(alice.ledger.balance().balance)
  })

  it('rejects a dropped entry', async () => {
    const alice = await node()
    const bob = await node()
    await settleJob(alice, bob)
    await settleJob(alice, bob)
    await settleJob(alice, bob)
    const segment = await alice.ledger.exportSegment()

    const gapped = { ...segment, links: [segment.links[0]!, segment.links[2]!] }

    expect(() => verifyChainSegment(gapped)).toThrow(/gap or is out of order/)
  })

  it('rejects a receipt used twice', async () => {
    const alice = await node()
    const bob = await node()
    await settleJob(alice, bob)
    const segment = await alice.ledger.exportSegment()
    const first = segment.links[0]!
    const firstBody = decodeLedgerEntryBody(first.entry.body)
    const again = signLedgerEntry({ ...firstBody, seq: 1, prev: ledgerEntryHash(first.entry) }, alice.signer)

    const doubled = { ...segment, links: [first, { entry: again, receipt: first.receipt }] }

    expect(() => verifyChainSegment(doubled)).toThrow(/records job [0-9a-f]+ a second time/)
  })

  it('imports increments after earlier imports', async () => {
    const alice = await node()
    const bob = await node()
    const carol = await node()
    await settleJob(alice, bob)
    await carol.ledger.importSegment(await alice.ledger.exportSegment())
    await settleJob(bob, alice, 3)

    const { state } = await carol.ledger.importSegment(await alice.ledger.exportSegment(1))

    expect(state.seq).toBe(1)
    expect(chainBalance(state, STARTING_GRANT)).toBe(alice.ledger.balance().balance)
  })

  it('proves a rewritten verified entry', async () => {
    const requesterKey = await newSigner()
    const branchA = await node(requesterKey)
    const branchB = await node(requesterKey)
    const executor = await node()
    const other = await node()
    await settleJob(other, branchA)
    await executor.ledger.importSegment(await branchA.ledger.exportSegment())
    await settleJob(other, branchB, 3)

    const known = await executor.ledger.verifiedChain(requesterKey.peerId)
    const { state, forkProofs } = await executor.ledger.importSegment(await branchB.ledger.exportSegment(known.seq))

    expect(forkProofs).toHaveLength(1)
    expect(state.seq).toBe(known.seq)
    expect(executor.ledger.isForker(requesterKey.peerId)).toBe(true)
  })

  it('rejects a segment hiding newer entries', async () => {
    const alice = await node()
    const bob = await node()
    await settleJob(alice, bob)
    const stale = await bob.ledger.exportSegment()
    await settleJob(alice, bob)

    await expect(alice.ledger.importSegment(stale)).rejects.toThrow(/missing the peer's newest entries/)
  })
})

describe('admission', () => {
  it('admits within grant and line', async () => {
    const requester = await node()
    const state = requester.ledger.chainState()

    const decision = decideAdmission({ chain: state, price: STARTING_GRANT + STARTING_CREDIT_LINE, trustScore: 0, distrusted: false, isBackedPayer: () => true })

    expect(decision.admitted).toBe(true)
  })

  it('rejects beyond grant and line', async () => {
    const requester = await node()
    const state = requester.ledger.chainState()

    const decision = decideAdmission({ chain: state, price: STARTING_GRANT + STARTING_CREDIT_LINE + 1, trustScore: 0, distrusted: false, isBackedPayer: () => true })

    expect(decision).toMatchObject({ admitted: false, reason: 'insufficient-credit' })
  })

  it('rejects a distrusted requester', async () => {
    const requester = await node()

    const decision = decideAdmission({ chain: requester.ledger.chainState(), price: 1, trustScore: 1, distrusted: true, isBackedPayer: () => true })

    expect(decision).toMatchObject({ admitted: false, reason: 'distrusted' })
  })

  it('ignores earnings from unbacked payers', async () => {
    const earner = await node()
    const payer = await node()
    await settleJob(earner, payer, 100)

    const backed = backedBalance(earner.ledger.chainState(), () => false)

    expect(earner.ledger.balance().balance).toBe(STARTING_GRANT + 10_000)
    expect(backed).toBe(STARTING_GRANT)
  })

  it('grows the credit line with trust', () => {
    expect(creditLine(0)).toBe(STARTING_CREDIT_LINE)
    expect(creditLine(0.5)).toBeGreaterThan(creditLine(0.1))
    expect(creditLine(Number.NaN)).toBe(STARTING_CREDIT_LINE)
  })
})
