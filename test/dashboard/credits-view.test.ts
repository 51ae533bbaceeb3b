import { describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { CreditsViewBuilder } from '../../src/dashboard/credits-view.js'
import { settleJob, useTestNodes } from '../helpers/credits.js'
import type { CreditsLedger } from '../../src/dashboard/credits-view.js'

const node = useTestNodes()

/** 10 CPU seconds at the test price of 100 millicredits a CPU second. */
const JOB_CREDITS = 1000
const STARTED_AT = Date.parse('2026-01-01T00:00:00Z')

describe('credits view', () => {
  it('starts the history at the grant', async () => {
    const alice = await node()

    const view = await new CreditsViewBuilder(alice.ledger, STARTED_AT).build()

    expect(view.balance).toBe(STARTING_GRANT)
    expect(view.history).toEqual([{ at: new Date(STARTED_AT).toISOString(), balance: STARTING_GRANT }])
    expect(view.receipts).toEqual([])
  })

  it('follows the balance entry by entry', async () => {
    const executor = await node()
    const requester = await node()
    const builder = new CreditsViewBuilder(executor.ledger, Date.now())

    await settleJob(executor, requester)
    await settleJob(executor, requester)
    const first = await builder.build()
    await settleJob(executor, requester)
    const second = await builder.build()

    expect(first.history.map(point => point.balance)).toEqual([STARTING_GRANT, STARTING_GRANT + JOB_CREDITS, STARTING_GRANT + 2 * JOB_CREDITS])
    expect(second.history.map(point => point.balance)).toEqual([STARTING_GRANT, STARTING_GRANT + JOB_CREDITS, STARTING_GRANT + 2 * JOB_CREDITS, STARTING_GRANT + 3 * JOB_CREDITS])
    expect(second.history.at(-1)?.balance).toBe(second.balance)
  })

  it('shows spending as falling balance', async () => {
    const executor = await node()
    const requester = await node()

    await settleJob(executor, requester)
    const view = await new CreditsViewBuilder(requester.ledger, Date.now()).build()

    expect(view.history.map(point => point.balance)).toEqual([STARTING_GRANT, STARTING_GRANT - JOB_CREDITS])
    expect(view.receipts[0]?.delta).toBe(-JOB_CREDITS)
    expect(view.receipts[0]?.role).toBe('requester')
  })

  it('verifies both receipt signatures', async () => {
    const executor = await node()
    const requester = await node()

    await settleJob(executor, requester)
    const view = await new CreditsViewBuilder(executor.ledger, Date.now()).build()

    expect(view.receipts.length).toBe(1)
    expect(view.receipts[0]?.signatures).toEqual({ executor: true, requester: true })
  })

  it('flags a forged countersignature', async () => {
    const executor = await node()
    const requester = await node()
    await settleJob(executor, requester)
    // A ledger never stores a receipt that fails to verify, so the forgery
    // is made on the way out of it.
    const forging: CreditsLedger = {
      head: () => executor.ledger.head(),
      balance: () => executor.ledger.balance(),
      exportSegment: async (fromSeq, limit) => await executor.ledger.exportSegment(fromSeq, limit),
      recent: async (limit) => (await executor.ledger.recent(limit)).map(record => {
        const signature = new Uint8Array(record.receipt.requesterSignature ?? [])
        signature[0] = (signature[0] ?? 0) ^ 0xff
        return { ...record, receipt: { ...record.receipt, requesterSignature: signature } }
      })
    }

    const view = await new CreditsViewBuilder(forging, Date.now()).build()

    expect(view.receipts[0]?.signatures).toEqual({ executor: true, requester: false })
  })
})
