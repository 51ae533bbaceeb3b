import { z } from 'zod'
import { bytesEqual, decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { verifySignature } from '../records/signature.js'
import { creditsFor, receiptHash, receiptSchema, verifyReceipt } from './receipt.js'
import { GENESIS_PREV, LedgerEntryError, decodeLedgerEntryBody, ledgerEntryHash, ledgerEntrySchema, verifyLedgerEntry } from './ledger-entry.js'
import type { LedgerEntry, LedgerEntryBody } from './ledger-entry.js'
import type { Receipt, ReceiptBody } from './receipt.js'

/** One entry of a chain with the double-signed receipt it records. */
export interface ChainLink {
  entry: LedgerEntry
  receipt: Receipt
}

/** Consecutive entries of one owner's chain, as exported for another node to verify. */
export interface ChainSegment {
  owner: string
  links: ChainLink[]
}

/**
 * The totals of a verified chain prefix. `seq` is -1 and `hash` is
 * GENESIS_PREV for an empty chain. Amounts are in millicredits.
 */
export interface ChainState {
  owner: string
  seq: number
  hash: Uint8Array
  earned: number
  spent: number
  /** Millicredits earned from each requester, so that a verifier can weigh them by the payer's trust. */
  earnedByPayer: Map<string, number>
}

export interface VerifyChainOptions {
  /**
   * The verified prefix that the segment continues. Without it the segment
   * must start at seq 0.
   */
  base?: ChainState
  /** Job ids already recorded in the base; a job recorded twice is rejected. */
  isKnownJob?: (jobId: string) => boolean
  /**
   * A set that collects the segment's job ids, and whose ids count as
   * already recorded, for replaying a long chain in several segments.
   */
  seenJobs?: Set<string>
  /**
   * Which signatures to check. 'all' (the default) checks the owner's on
   * every entry and both on every receipt. 'counterparty' checks the owner's
   * on every entry and the other peer's on every receipt. The owner's own
   * receipt signature adds nothing there, because its signed entry already
   * commits to the receipt's hash. 'none' checks only form, links, roles and
   * sums, for the owner's own chain read back at start.
   */
  signatures?: 'all' | 'counterparty' | 'none'
}

/** Upper bound of an encoded segment sent between nodes. */
export const MAX_SEGMENT_BYTES = 4 * 1024 * 1024
export const MAX_SEGMENT_LINKS = 4096

export function emptyChainState (owner: string): ChainState {
  return { owner, seq: -1, hash: GENESIS_PREV, earned: 0, spent: 0, earnedByPayer: new Map() }
}

/**
 * Replays a chain segment on top of its base and returns the new state.
 * Throws a LedgerEntryError naming the first entry that is wrong. Wrong
 * means a gap or broken link, an entry of another owner, or a job recorded
 * twice. It also means a receipt that does not verify, does not name the
 * owner in the entry's role, claims more than its own price formula allows,
 * or moves another amount than the entry. The base is not modified.
 */
export function verifyChainSegment (segment: ChainSegment, options: VerifyChainOptions = {}): ChainState {
  const base = options.base ?? emptyChainState(segment.owner)
  if (base.owner !== segment.owner) {
    throw new LedgerEntryError(`chain segment of ${segment.owner} cannot continue the chain of ${base.owner}`)
  }

  const state: ChainState = { ...base, earnedByPayer: new Map(base.earnedByPayer) }
  const jobsInSegment = options.seenJobs ?? new Set<string>()
  for (const link of segment.links) {
    const signatures = options.signatures ?? 'all'
    const body = signatures === 'none'
      ? decodeLedgerEntryBody(link.entry.body)
      : verifyLedgerEntry(link.entry).body
    const where = `entry ${body.seq} of ${segment.owner}`

    if (body.owner !== segment.owner) {
      throw new LedgerEntryError(`${where} is owned by ${body.owner}`)
    }
    if (body.seq !== state.seq + 1) {
      throw new LedgerEntryError(`${where} follows entry ${state.seq}: the chain has a gap or is out of order`)
    }
    if (!bytesEqual(body.prev, state.hash)) {
      throw new LedgerEntryError(`${where} does not link to the hash of the entry before it`)
    }

    const receipt = checkLinkReceipt(link.receipt, body, where, signatures)
    if (jobsInSegment.has(receipt.jobId) || options.isKnownJob?.(receipt.jobId) === true) {
      throw new LedgerEntryError(`${where} records job ${receipt.jobId} a second time`)
    }
    jobsInSegment.add(receipt.jobId)

    if (body.role === 'executor') {
      state.earned += body.delta
      state.earnedByPayer.set(receipt.requester, (state.earnedByPayer.get(receipt.requester) ?? 0) + body.delta)
    } else {
      state.spent -= body.delta
    }
    state.seq = body.seq
    state.hash = ledgerEntryHash(link.entry)
  }
  return state
}

function checkLinkReceipt (receipt: Receipt, entry: LedgerEntryBody, where: string, signatures: 'all' | 'counterparty' | 'none'): ReceiptBody {
  let body: ReceiptBody
  try {
    body = verifyReceipt(receipt, { countersigned: true, checkSignatures: signatures === 'all' })
  } catch (err) {
    throw new LedgerEntryError(`${where} records an invalid receipt: ${(err as Error).message}`, { cause: err })
  }
  if (signatures === 'counterparty' && !counterpartySigned(receipt, body, entry.role)) {
    const counterparty = entry.role === 'executor' ? body.requester : body.executor
    throw new LedgerEntryError(`${where} records job ${body.jobId}, whose receipt is not signed by its ${entry.role === 'executor' ? 'requester' : 'executor'} ${counterparty}`)
  }

  if (!bytesEqual(receiptHash(receipt), entry.receiptHash)) {
    throw new LedgerEntryError(`${where} names another receipt than the one stored with it`)
  }
  const party = entry.role === 'executor' ? body.executor : body.requester
  if (party !== entry.owner) {
    throw new LedgerEntryError(`${where} claims the ${entry.role} side of job ${body.jobId}, but the receipt names ${party}`)
  }
  if (body.credits > creditsFor(body.resources, body.price)) {
    throw new LedgerEntryError(`${where} records job ${body.jobId}, whose receipt claims more credits than its price allows`)
  }
  const expected = entry.role === 'executor' ? body.credits : -body.credits
  if (entry.delta !== expected) {
    throw new LedgerEntryError(`${where} moves ${entry.delta} millicredits, but its receipt moves ${expected}`)
  }
  return body
}

function counterpartySigned (receipt: Receipt, body: ReceiptBody, role: LedgerEntryBody['role']): boolean {
  if (role === 'executor') {
    return receipt.requesterSignature !== undefined &&
      verifySignature('receipt-countersignature', receipt.body, receipt.requesterSignature, body.requester)
  }
  return verifySignature('receipt', receipt.body, receipt.executorSignature, body.executor)
}

const segmentSchema = z.strictObject({
  owner: z.string().max(100),
  links: z.array(z.strictObject({ entry: ledgerEntrySchema, receipt: receiptSchema })).max(MAX_SEGMENT_LINKS)
})

export function encodeChainSegment (segment: ChainSegment): Uint8Array {
  return encodeCanonical(segment)
}

/**
 * Decodes a segment received from another node. It checks only the form:
 * verify the result with `verifyChainSegment` before trusting any of it.
 */
export function decodeChainSegment (bytes: Uint8Array): ChainSegment {
  let value: unknown
  try {
    value = decodeCanonical(bytes, MAX_SEGMENT_BYTES)
  } catch (err) {
    throw new LedgerEntryError(`chain segment is not valid: ${(err as Error).message}`, { cause: err })
  }
  const parsed = segmentSchema.safeParse(value)
  if (!parsed.success) {
    throw new LedgerEntryError(`chain segment is malformed: ${z.prettifyError(parsed.error)}`)
  }
  return parsed.data
}

/** Computes a chain's balance: the starting grant plus earned minus spent. */
export function chainBalance (state: Pick<ChainState, 'earned' | 'spent'>, startingGrant: number): number {
  return startingGrant + state.earned - state.spent
}
