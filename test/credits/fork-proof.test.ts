import { afterEach, describe, expect, it } from 'vitest'
import { admitRequester, decideAdmission } from '../../src/credits/admission.js'
import { createForkProof, decodeForkProof, encodeForkProof } from '../../src/credits/fork-proof.js'
import { Ledger } from '../../src/credits/ledger.js'
import { Reputation } from '../../src/reputation/reputation.js'
import { newSigner, openTempDatabase, openTestNode, settleJob } from '../helpers/credits.js'
import type { ForkProof } from '../../src/credits/fork-proof.js'
import type { TempDatabase, TestNode } from '../helpers/credits.js'

const opened: Array<{ db: TempDatabase }> = []

async function node (signer?: Awaited<ReturnType<typeof newSigner>>): Promise<TestNode> {
  const created = await openTestNode(signer)
  opened.push(created)
  return created
}

afterEach(async () => {
  for (const each of opened.splice(0)) {
    await each.db.cleanup()
  }
})

/**
 * Builds a fork and returns X's proof of it. A forker spends its grant with
 * executor X on one branch of its chain, then rewrites that entry on a
 * second branch to spend it again with Y. X finds the fork when the forker
 * shows it the second branch.
 */
async function forkAndShow (): Promise<{ proof: ForkProof, forker: string }> {
  const forkerKey = await newSigner()
  const branchA = await node(forkerKey)
  const branchB = await node(forkerKey)
  const executorX = await node()
  const executorY = await node()

  await settleJob(executorX, branchA, 900)
  await settleJob(executorY, branchB, 900)

  const { forkProofs } = await executorX.ledger.importSegment(await branchB.ledger.exportSegment())
  expect(forkProofs).toHaveLength(1)
  return { proof: forkProofs[0]!, forker: forkerKey.peerId }
}

describe('fork proof', () => {
  it('is found by the executor', async () => {
    const { proof, forker } = await forkAndShow()

    expect(proof.owner).toBe(forker)
    expect(proof.seq).toBe(0)
  })

  it('verifies on a third node', async () => {
    const { proof, forker } = await forkAndShow()
    const bytes = encodeForkProof(proof)
    const third = await node()

    const received = decodeForkProof(bytes)
    const stored = await third.ledger.recordForkProof(received)

    expect(stored).toBe(true)
    expect(third.ledger.isForker(forker)).toBe(true)
  })

  it('distrusts the forker there', async () => {
    const { proof, forker } = await forkAndShow()
    const third = await node()
    const reputation = new Reputation({ self: third.signer.peerId, bootstrapPeers: [] })

    const received = decodeForkProof(encodeForkProof(proof))
    reputation.markForker(received.owner)
    const decision = decideAdmission({ chain: third.ledger.chainState(), price: 1, trustScore: 1, distrusted: reputation.isDistrusted(forker), isBackedPayer: () => true })

    expect(reputation.isDistrusted(forker)).toBe(true)
    expect(decision).toMatchObject({ admitted: false, reason: 'distrusted' })
  })

  it('survives a restart', async () => {
    const { proof, forker } = await forkAndShow()
    const db = await openTempDatabase()
    opened.push({ db })
    const signer = await newSigner()
    await (await Ledger.open({ database: db.database, signer, location: db.location })).recordForkProof(proof)

    const reopened = await Ledger.open({ database: db.database, signer, location: db.location })

    expect(reopened.isForker(forker)).toBe(true)
  })

  it('rejects one entry given twice', async () => {
    const { proof } = await forkAndShow()

    expect(() => createForkProof(proof.entries[0], proof.entries[0])).toThrow(/does not prove a fork/)
  })

  it('rejects entries of two owners', async () => {
    const alice = await node()
    const bob = await node()
    await settleJob(alice, bob)
    const [aliceEntry] = (await alice.ledger.exportSegment()).links
    const [bobEntry] = (await bob.ledger.exportSegment()).links

    expect(() => createForkProof(aliceEntry!.entry, bobEntry!.entry)).toThrow(/different owners/)
  })

  it('rejects a tampered entry', async () => {
    const { proof } = await forkAndShow()
    const body = new Uint8Array(proof.entries[1].body)
    body[body.length - 1] = (body[body.length - 1] ?? 0) ^ 1

    const tampered = { entries: [proof.entries[0], { ...proof.entries[1], body }] as const }

    expect(() => decodeForkProof(encodeForkProof({ ...proof, entries: [...tampered.entries] }))).toThrow(/not signed by its owner|not valid/)
  })
})

describe('admitRequester', () => {
  it('rejects a forked segment', async () => {
    const forkerKey = await newSigner()
    const branchA = await node(forkerKey)
    const branchB = await node(forkerKey)
    const executor = await node()
    const other = await node()
    await settleJob(executor, branchA, 5)
    await settleJob(other, branchB, 5)
    const trust = { trustScore: () => 1, isDistrusted: () => false }

    const decision = await admitRequester(executor.ledger, trust, await branchB.ledger.exportSegment(), 1)

    expect(decision).toMatchObject({ admitted: false, reason: 'distrusted' })
    expect(decision.forkProofs).toHaveLength(1)
  })

  it('admits a sound requester', async () => {
    const requester = await node()
    const executor = await node()
    const trust = { trustScore: () => 0, isDistrusted: () => false }

    const decision = await admitRequester(executor.ledger, trust, await requester.ledger.exportSegment(), 1000)

    expect(decision.admitted).toBe(true)
  })
})
