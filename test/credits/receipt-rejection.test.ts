import { afterEach, describe, expect, it } from 'vitest'
import { countersignReceipt, issueReceipt } from '../../src/credits/receipt.js'
import { newJob, newSigner, openTestNode, signJob } from '../helpers/credits.js'
import type { TestNode } from '../helpers/credits.js'

// A receipt that is signed by the wrong key, names another job, or claims
// more credits than the accepted price is rejected by both sides, and
// nothing is appended to either ledger.

const opened: TestNode[] = []

async function pair (): Promise<{ executor: TestNode, requester: TestNode }> {
  const executor = await openTestNode()
  const requester = await openTestNode()
  opened.push(executor, requester)
  return { executor, requester }
}

afterEach(async () => {
  for (const each of opened.splice(0)) {
    await each.db.cleanup()
  }
})

function expectUnchanged (...nodes: TestNode[]): void {
  for (const each of nodes) {
    expect(each.ledger.head().seq).toBe(-1)
  }
}

describe('receipt rejection', () => {
  it('rejects a wrong executor key', async () => {
    const { executor, requester } = await pair()
    const impostor = await newSigner()
    const job = newJob(executor.signer, requester.signer)
    const signed = signJob(job, executor.signer, requester.signer)
    const forged = { ...signed, executorSignature: impostor.sign('receipt', signed.body) }

    await expect(requester.ledger.append(forged, job.terms)).rejects.toThrow(/not signed by its executor/)
    await expect(executor.ledger.append(forged, job.terms)).rejects.toThrow(/not signed by its executor/)
    expectUnchanged(executor, requester)
  })

  it('rejects a wrong countersignature key', async () => {
    const { executor, requester } = await pair()
    const impostor = await newSigner()
    const job = newJob(executor.signer, requester.signer)
    const issued = issueReceipt(job.body, executor.signer)
    const forged = { ...issued, requesterSignature: impostor.sign('receipt-countersignature', issued.body) }

    await expect(requester.ledger.append(forged, job.terms)).rejects.toThrow(/not countersigned by its requester/)
    await expect(executor.ledger.append(forged, job.terms)).rejects.toThrow(/not countersigned by its requester/)
    expectUnchanged(executor, requester)
  })

  it('rejects a receipt without countersignature', async () => {
    const { executor, requester } = await pair()
    const job = newJob(executor.signer, requester.signer)
    const issued = issueReceipt(job.body, executor.signer)

    await expect(executor.ledger.append(issued, job.terms)).rejects.toThrow(/no countersignature/)
    expectUnchanged(executor)
  })

  it('rejects a receipt for another job', async () => {
    const { executor, requester } = await pair()
    const job = newJob(executor.signer, requester.signer)
    const other = newJob(executor.signer, requester.signer)
    const receipt = signJob(other, executor.signer, requester.signer)

    await expect(requester.ledger.append(receipt, job.terms)).rejects.toThrow(/names job/)
    await expect(executor.ledger.append(receipt, job.terms)).rejects.toThrow(/names job/)
    expectUnchanged(executor, requester)
  })

  it('rejects more credits than the price', async () => {
    const { executor, requester } = await pair()
    const job = newJob(executor.signer, requester.signer)
    const inflated = { ...job, body: { ...job.body, credits: job.body.credits + 1 } }
    const receipt = countersignReceipt(issueReceipt(inflated.body, executor.signer), requester.signer)

    await expect(requester.ledger.append(receipt, job.terms)).rejects.toThrow(/claims \d+ millicredits/)
    await expect(executor.ledger.append(receipt, job.terms)).rejects.toThrow(/claims \d+ millicredits/)
    expectUnchanged(executor, requester)
  })

  it('rejects a receipt naming other peers', async () => {
    const { executor, requester } = await pair()
    const bystander = await openTestNode()
    opened.push(bystander)
    const job = newJob(executor.signer, requester.signer)
    const receipt = signJob(job, executor.signer, requester.signer)

    await expect(bystander.ledger.append(receipt, job.terms)).rejects.toThrow(/names neither peer/)
    expectUnchanged(bystander)
  })

  it('rejects a job appended twice', async () => {
    const { executor, requester } = await pair()
    const job = newJob(executor.signer, requester.signer)
    const receipt = signJob(job, executor.signer, requester.signer)
    await executor.ledger.append(receipt, job.terms)

    await expect(executor.ledger.append(receipt, job.terms)).rejects.toThrow(/already in the ledger/)
    expect(executor.ledger.head().seq).toBe(0)
  })
})
