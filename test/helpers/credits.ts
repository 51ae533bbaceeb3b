import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Level } from 'level'
import { afterEach } from 'vitest'
import { Ledger } from '../../src/credits/ledger.js'
import { countersignReceipt, creditsFor, issueReceipt } from '../../src/credits/receipt.js'
import { sha256 } from '../../src/records/hash.js'
import { createSigner } from '../../src/records/signature.js'
import type { JobTerms, Price, Receipt, ReceiptBody } from '../../src/credits/receipt.js'
import type { Signer } from '../../src/records/signature.js'

export const testPrice: Price = { perCpuSecond: 100, perGibSecond: 10, perThousandTokens: 50 }

export async function newSigner (): Promise<Signer> {
  const privateKey = await generateKeyPair('Ed25519')
  return createSigner(privateKey, peerIdFromPrivateKey(privateKey).toString())
}

export interface TestJob {
  body: ReceiptBody
  terms: JobTerms
}

/** Creates a job of `cpuSeconds` CPU seconds whose receipt claims exactly its price. */
export function newJob (executor: Signer, requester: Signer, cpuSeconds = 10): TestJob {
  const resources = { cpuSeconds, wallSeconds: cpuSeconds, peakMemoryBytes: 0, agentInputTokens: 0, agentOutputTokens: 0, agentCostUsd: 0 }
  const credits = creditsFor(resources, testPrice)
  const resultHash = sha256(randomBytes(16))
  const jobId = randomBytes(16).toString('hex')
  const body: ReceiptBody = {
    version: 1,
    jobId,
    requester: requester.peerId,
    executor: executor.peerId,
    stage: 'analyzed',
    kind: 'command',
    outcome: 'succeeded',
    resources,
    price: testPrice,
    credits,
    resultHash: resultHash as ReceiptBody['resultHash'],
    startedAt: 1_700_000_000_000,
    finishedAt: 1_700_000_010_000
  }
  const terms: JobTerms = { jobId, requester: requester.peerId, executor: executor.peerId, price: testPrice, maxCredits: credits, resultHash }
  return { body, terms }
}

export function signJob (job: TestJob, executor: Signer, requester: Signer): Receipt {
  return countersignReceipt(issueReceipt(job.body, executor), requester)
}

/** A real LevelDB in a temporary folder, removed by `cleanup`. */
export interface TempDatabase {
  database: Level<string, Uint8Array>
  location: string
  cleanup: () => Promise<void>
}

export async function openTempDatabase (): Promise<TempDatabase> {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'emdx-ledger-'))
  const location = path.join(folder, 'db')
  const database = new Level<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await database.open()
  return {
    database,
    location,
    cleanup: async () => {
      await database.close()
      await rm(folder, { recursive: true, force: true })
    }
  }
}

export interface TestNode {
  signer: Signer
  ledger: Ledger
  db: TempDatabase
}

export async function openTestNode (signer?: Signer): Promise<TestNode> {
  const db = await openTempDatabase()
  const owner = signer ?? await newSigner()
  const ledger = await Ledger.open({ database: db.database, signer: owner, location: db.location })
  return { signer: owner, ledger, db }
}

/** Runs one job from `requester` on `executor` and appends it to both ledgers. */
export async function settleJob (executor: TestNode, requester: TestNode, cpuSeconds = 10): Promise<Receipt> {
  const job = newJob(executor.signer, requester.signer, cpuSeconds)
  const receipt = signJob(job, executor.signer, requester.signer)
  const requesterEntry = await requester.ledger.append(receipt, job.terms)
  const executorEntry = await executor.ledger.append(receipt, job.terms)
  await executor.ledger.recordWitness(requesterEntry)
  await requester.ledger.recordWitness(executorEntry)
  return receipt
}

/**
 * Returns a function that opens test nodes, each in its own temporary
 * LevelDB, and removes them all after each test of the calling file.
 */
export function useTestNodes (): (signer?: Signer) => Promise<TestNode> {
  const opened: TestNode[] = []
  afterEach(async () => {
    for (const each of opened.splice(0)) {
      await each.ledger.close()
      await each.db.cleanup()
    }
  })
  return async (signer) => {
    const created = await openTestNode(signer)
    opened.push(created)
    return created
  }
}
