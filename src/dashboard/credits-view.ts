import { summarizeRecord } from '../api/credits-routes.js'
import { decodeLedgerEntryBody } from '../credits/ledger-entry.js'
import { toHex } from '../records/hash.js'
import { verifySignature } from '../records/signature.js'
import type { CreditsView, ReceiptView } from './snapshot-types.js'
import type { Ledger } from '../credits/ledger.js'
import type { Receipt, ReceiptBody } from '../credits/receipt.js'

/** The ledger operations the credits view reads. */
export type CreditsLedger = Pick<Ledger, 'head' | 'balance' | 'recent' | 'exportSegment'>

/** Points of the balance chart kept; older ledger entries drop out of the chart. */
const MAX_HISTORY_POINTS = 500
/** Entries read from the ledger at a time while the history catches up. */
const HISTORY_BATCH = 500
/** Receipts the dashboard lists. */
const RECENT_RECEIPTS = 10
/** Signature checks kept, by entry hash; ledger entries never change, so a check holds. */
const MAX_CHECKED_RECEIPTS = 1000

/**
 * Builds the credits part of the dashboard: the balance, its history from
 * the ledger's entries, and the recent receipts with both signatures
 * checked. The history is read once and then extended with new entries
 * only, and each receipt is checked once, so a snapshot every second stays
 * cheap on a long ledger.
 */
export class CreditsViewBuilder {
  private readonly ledger: CreditsLedger
  private readonly startedAt: number
  private history: Array<{ at: number, balance: number }> = []
  private historySeq = -1
  private runningBalance?: number
  private readonly checked = new Map<string, ReceiptView['signatures']>()

  /** `startedAt` is when the chart starts while the ledger has no entry, in ms since the epoch. */
  constructor (ledger: CreditsLedger, startedAt: number) {
    this.ledger = ledger
    this.startedAt = startedAt
  }

  async build (): Promise<CreditsView> {
    const balance = this.ledger.balance()
    await this.extendHistory(balance.grant)
    const recent = await this.ledger.recent(RECENT_RECEIPTS)
    const receipts = recent.map(record => ({
      ...pickReceiptFields(summarizeRecord(record)),
      signatures: this.signatures(toHex(record.entryHash), record.receipt, record.receiptBody)
    }))
    return {
      ...balance,
      history: this.history.map(point => ({ at: new Date(point.at).toISOString(), balance: point.balance })),
      receipts
    }
  }

  /** Adds the entries appended since the last build to the balance history. */
  private async extendHistory (grant: number): Promise<void> {
    if (this.runningBalance === undefined) {
      this.runningBalance = grant
      this.history.push({ at: this.startedAt, balance: grant })
    }

    const head = this.ledger.head()
    while (this.historySeq < head.seq) {
      const segment = await this.ledger.exportSegment(this.historySeq + 1, HISTORY_BATCH)
      if (segment.links.length === 0) {
        break
      }
      for (const link of segment.links) {
        const body = decodeLedgerEntryBody(link.entry.body)
        this.runningBalance += body.delta
        this.historySeq = body.seq
        if (this.history.length === 1 && this.history[0] !== undefined && body.time < this.history[0].at) {
          // The ledger is older than this start of the node: the chart starts at its first entry.
          this.history[0].at = body.time
        }
        this.history.push({ at: body.time, balance: this.runningBalance })
      }
    }
    if (this.history.length > MAX_HISTORY_POINTS) {
      this.history = this.history.slice(-MAX_HISTORY_POINTS)
    }
  }

  /** Checks the executor's signature and the requester's countersignature of a receipt, once. */
  private signatures (entryHash: string, receipt: Receipt, body: ReceiptBody): ReceiptView['signatures'] {
    const known = this.checked.get(entryHash)
    if (known !== undefined) {
      return known
    }
    const result = {
      executor: verifySignature('receipt', receipt.body, receipt.executorSignature, body.executor),
      requester: receipt.requesterSignature !== undefined && verifySignature('receipt-countersignature', receipt.body, receipt.requesterSignature, body.requester)
    }
    if (this.checked.size >= MAX_CHECKED_RECEIPTS) {
      this.checked.clear()
    }
    this.checked.set(entryHash, result)
    return result
  }
}

function pickReceiptFields (summary: ReturnType<typeof summarizeRecord>): Omit<ReceiptView, 'signatures'> {
  return {
    seq: summary.seq,
    jobId: summary.jobId,
    role: summary.role,
    counterparty: summary.counterparty,
    stage: summary.stage,
    outcome: summary.outcome,
    delta: summary.delta,
    cpuSeconds: summary.cpuSeconds,
    appendedAt: summary.appendedAt
  }
}
