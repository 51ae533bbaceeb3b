import { toHex } from '../records/hash.js'
import type { Ledger, LedgerRecord } from '../credits/ledger.js'
import type { Reputation } from '../reputation/reputation.js'
import type { ApiApp } from './server.js'

export const DEFAULT_RECEIPT_LIMIT = 20
export const MAX_RECEIPT_LIMIT = 1000

/** One receipt of `GET /api/v1/receipts`, from this node's side. Amounts are in millicredits. */
export interface ReceiptSummary {
  seq: number
  jobId: string
  role: 'executor' | 'requester'
  counterparty: string
  stage: string
  kind: 'agent' | 'command'
  outcome: string
  /** Signed change of this node's balance. */
  delta: number
  cpuSeconds: number
  appendedAt: string
  entryHash: string
  receiptHash: string
}

/** The response of `GET /api/v1/credits`. Amounts are in millicredits (1 credit = 1000). */
export interface CreditsSummary {
  peerId: string
  balance: number
  grant: number
  earned: number
  spent: number
  head: { seq: number, hash: string }
  recent: ReceiptSummary[]
}

export interface CreditsSource {
  ledger: Ledger
  reputation: Reputation
}

/** `GET /api/v1/credits`, `GET /api/v1/receipts` and `GET /api/v1/reputation`. */
export function registerCreditsRoutes (app: ApiApp, source: () => CreditsSource): void {
  app.get('/api/v1/credits', async (): Promise<CreditsSummary> => {
    const { ledger } = source()
    const head = ledger.head()
    return {
      peerId: ledger.owner,
      ...ledger.balance(),
      head: { seq: head.seq, hash: toHex(head.hash) },
      recent: (await ledger.recent(5)).map(summarizeRecord)
    }
  })

  app.get<{ Querystring: { limit?: string, verify?: string } }>('/api/v1/receipts', {
    schema: {
      querystring: {
        type: 'object',
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: MAX_RECEIPT_LIMIT },
          verify: { type: 'boolean' }
        },
        additionalProperties: false
      }
    }
  }, async (request) => {
    const { ledger } = source()
    const limit = Number(request.query.limit ?? DEFAULT_RECEIPT_LIMIT)
    const receipts = (await ledger.recent(limit)).map(summarizeRecord)
    if (String(request.query.verify) !== 'true') {
      return { receipts }
    }
    const verification = await ledger.verify()
    return {
      receipts,
      verification: {
        valid: verification.valid,
        entries: verification.entries,
        balance: verification.balance.balance,
        ...(verification.problem === undefined ? {} : { problem: verification.problem })
      }
    }
  })

  app.get('/api/v1/reputation', async () => source().reputation.snapshot())
}

export function summarizeRecord (record: LedgerRecord): ReceiptSummary {
  const role = record.entryBody.role
  return {
    seq: record.entryBody.seq,
    jobId: record.receiptBody.jobId,
    role,
    counterparty: role === 'executor' ? record.receiptBody.requester : record.receiptBody.executor,
    stage: record.receiptBody.stage,
    kind: record.receiptBody.kind,
    outcome: record.receiptBody.outcome,
    delta: record.entryBody.delta,
    cpuSeconds: record.receiptBody.resources.cpuSeconds,
    appendedAt: new Date(record.entryBody.time).toISOString(),
    entryHash: toHex(record.entryHash),
    receiptHash: toHex(record.entryBody.receiptHash)
  }
}
