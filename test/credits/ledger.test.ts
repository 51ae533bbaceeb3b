import { describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { Ledger } from '../../src/credits/ledger.js'
import { GENESIS_PREV, ledgerEntryHash } from '../../src/credits/ledger-entry.js'
import { settleJob, useTestNodes } from '../helpers/credits.js'

const node = useTestNodes()

describe('Ledger', () => {
  it('starts with the starting grant', async () => {
    const alice = await node()

    expect(alice.ledger.balance()).toEqual({ balance: STARTING_GRANT, grant: STARTING_GRANT, earned: 0, spent: 0 })
  })

  it('starts with an empty head', async () => {
    const alice = await node()

    expect(alice.ledger.head()).toEqual({ seq: -1, hash: GENESIS_PREV })
  })

  it('moves credits between both ledgers', async () => {
    const executor = await node()
    const requester = await node()

    const receipt = await settleJob(executor, requester, 10)

    const credits = 1000
    expect(receipt.requesterSignature).toBeDefined()
    expect(executor.ledger.balance().balance).toBe(STARTING_GRANT + credits)
    expect(requester.ledger.balance().balance).toBe(STARTING_GRANT - credits)
  })

  it('links each entry to the previous', async () => {
    const executor = await node()
    const requester = await node()

    await settleJob(executor, requester)
    await settleJob(executor, requester)
    const [second, first] = await executor.ledger.recent(2)

    expect(first?.entryBody.prev).toEqual(GENESIS_PREV)
    expect(second?.entryBody.prev).toEqual(ledgerEntryHash(first!.entry))
  })

  it('verifies a chain of several entries', async () => {
    const executor = await node()
    const requester = await node()

    for (let index = 0; index < 5; index++) {
      await settleJob(executor, requester)
    }
    const report = await executor.ledger.verify()

    expect(report.valid).toBe(true)
    expect(report.entries).toBe(5)
  })

  it('verifies chains longer than chunks', async () => {
    const executor = await node()
    const requester = await node()
    for (let index = 0; index < 300; index++) {
      await settleJob(executor, requester, 1)
    }

    const report = await executor.ledger.verify()
    const reopened = await Ledger.open({ database: executor.db.database, signer: executor.signer, location: executor.db.location })

    expect(report).toMatchObject({ valid: true, entries: 300 })
    expect(reopened.balance()).toEqual(executor.ledger.balance())
  })

  it('keeps the balance across a reopen', async () => {
    const executor = await node()
    const requester = await node()
    await settleJob(executor, requester)
    await settleJob(requester, executor, 3)

    const reopened = await Ledger.open({ database: executor.db.database, signer: executor.signer, location: executor.db.location })

    expect(reopened.balance()).toEqual(executor.ledger.balance())
    expect(reopened.head()).toEqual(executor.ledger.head())
  })

  it('lists recent receipts newest first', async () => {
    const executor = await node()
    const requester = await node()

    await settleJob(executor, requester, 1)
    await settleJob(executor, requester, 2)
    const records = await executor.ledger.recent(10)

    expect(records.map(record => record.receiptBody.credits)).toEqual([200, 100])
  })

  it('serialises concurrent appends', async () => {
    const executor = await node()
    const requesters = [await node(), await node(), await node()]

    await Promise.all(requesters.map(async requester => await settleJob(executor, requester)))
    const report = await executor.ledger.verify()

    expect(report.valid).toBe(true)
    expect(executor.ledger.head().seq).toBe(2)
  })
})
