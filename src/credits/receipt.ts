import { z } from 'zod'
import { EmdxError } from '../node/errors.js'
import { bytesSchema, peerIdSchema, timestampSchema } from '../records/schema.js'
import { bytesEqual, decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { HASH_BYTES, sha256 } from '../records/hash.js'
import { SIGNATURE_BYTES, verifySignature } from '../records/signature.js'
import type { Signer } from '../records/signature.js'

/** A receipt that is malformed, wrongly signed or does not match its job. */
export class ReceiptError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_RECEIPT', message, options)
  }
}

export const RECEIPT_VERSION = 1
/** Upper bound of an encoded receipt; real ones are about 600 bytes. */
export const MAX_RECEIPT_BYTES = 4096

const hash = bytesSchema(HASH_BYTES)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const amount = z.number().nonnegative().finite().max(1e12)

/** What a stage used, as metered by the executor's sandbox and agent. */
export const meteredResourcesSchema = z.strictObject({
  cpuSeconds: amount,
  wallSeconds: amount,
  peakMemoryBytes: count,
  agentInputTokens: count,
  agentOutputTokens: count,
  /** The agent's own reported cost in US dollars, for the record; credits do not depend on it. */
  agentCostUsd: amount
})
export type MeteredResources = z.infer<typeof meteredResourcesSchema>

/**
 * Prices in millicredits (1 credit = 1000 millicredits), so that every
 * balance is an integer and sums are exact.
 */
export const priceSchema = z.strictObject({
  perCpuSecond: count,
  perGibSecond: count,
  perThousandTokens: count
})
export type Price = z.infer<typeof priceSchema>

export const stageOutcomeSchema = z.enum(['succeeded', 'failed', 'timed_out', 'out_of_memory', 'output_limit', 'disk_limit', 'cancelled'])

/**
 * The signed part of a receipt: one job, both peers, what it used and what it
 * cost. Both sides sign these same bytes.
 */
export const receiptBodySchema = z.strictObject({
  version: z.literal(RECEIPT_VERSION),
  jobId: z.string().regex(/^[0-9a-f]{32}$/, 'expected 32 lower-case hex digits'),
  requester: peerIdSchema,
  executor: peerIdSchema,
  stage: z.string().min(1).max(64),
  kind: z.enum(['agent', 'command']),
  outcome: stageOutcomeSchema,
  resources: meteredResourcesSchema,
  price: priceSchema,
  /** Millicredits moved from the requester to the executor. */
  credits: count,
  resultHash: hash,
  startedAt: timestampSchema,
  finishedAt: timestampSchema
}).refine(body => body.requester !== body.executor, 'requester and executor must differ')
  .refine(body => body.finishedAt >= body.startedAt, 'finishedAt must not be before startedAt')
export type ReceiptBody = z.infer<typeof receiptBodySchema>

/** A receipt as stored and sent: the encoded body and the signatures over it. */
export interface Receipt {
  body: Uint8Array
  executorSignature: Uint8Array
  /** Absent until the requester has checked the result and countersigned. */
  requesterSignature?: Uint8Array
}

/** The form of a receipt as stored and sent, before its body is decoded. */
export const receiptSchema = z.strictObject({
  body: bytesSchema(),
  executorSignature: bytesSchema(SIGNATURE_BYTES),
  requesterSignature: bytesSchema(SIGNATURE_BYTES).optional()
})

/** Encodes and signs a receipt body as its executor. */
export function issueReceipt (body: ReceiptBody, executor: Signer): Receipt {
  if (executor.peerId !== body.executor) {
    throw new ReceiptError(`receipt names executor ${body.executor}, but the signer is ${executor.peerId}`)
  }
  const bytes = encodeCanonical(receiptBodySchema.parse(body))
  return { body: bytes, executorSignature: executor.sign('receipt', bytes) }
}

/** Adds the requester's countersignature, after it has checked the result. */
export function countersignReceipt (receipt: Receipt, requester: Signer): Receipt {
  const body = decodeReceiptBody(receipt.body)
  if (requester.peerId !== body.requester) {
    throw new ReceiptError(`receipt names requester ${body.requester}, but the signer is ${requester.peerId}`)
  }
  return { ...receipt, requesterSignature: requester.sign('receipt-countersignature', receipt.body) }
}

export function decodeReceiptBody (bytes: Uint8Array): ReceiptBody {
  let value: unknown
  try {
    value = decodeCanonical(bytes, MAX_RECEIPT_BYTES)
  } catch (err) {
    throw new ReceiptError(`receipt body is not valid: ${(err as Error).message}`, { cause: err })
  }
  const parsed = receiptBodySchema.safeParse(value)
  if (!parsed.success) {
    throw new ReceiptError(`receipt body is not valid: ${z.prettifyError(parsed.error)}`)
  }
  return parsed.data
}

export interface VerifyReceiptOptions {
  /** Require the requester's countersignature as well as the executor's. */
  countersigned: boolean
  /**
   * False to check only the form, for receipts this node verified before
   * storing them; true by default.
   */
  checkSignatures?: boolean
}

/**
 * Checks a receipt's form and signatures and returns its body. Throws a
 * ReceiptError naming what is wrong. It does not check the receipt against a
 * job or a price: see `checkReceiptMatchesJob`.
 */
export function verifyReceipt (receipt: unknown, options: VerifyReceiptOptions): ReceiptBody {
  const parsed = receiptSchema.safeParse(receipt)
  if (!parsed.success) {
    throw new ReceiptError(`receipt is malformed: ${z.prettifyError(parsed.error)}`)
  }
  const body = decodeReceiptBody(parsed.data.body)
  const checkSignatures = options.checkSignatures !== false

  if (checkSignatures && !verifySignature('receipt', parsed.data.body, parsed.data.executorSignature, body.executor)) {
    throw new ReceiptError(`receipt for job ${body.jobId} is not signed by its executor ${body.executor}`)
  }
  if (options.countersigned) {
    const countersignature = parsed.data.requesterSignature
    if (countersignature === undefined) {
      throw new ReceiptError(`receipt for job ${body.jobId} has no countersignature by its requester`)
    }
    if (checkSignatures && !verifySignature('receipt-countersignature', parsed.data.body, countersignature, body.requester)) {
      throw new ReceiptError(`receipt for job ${body.jobId} is not countersigned by its requester ${body.requester}`)
    }
  }
  return body
}

/** What the requester expects of the receipt for a job it sent. */
export interface JobTerms {
  jobId: string
  requester: string
  executor: string
  price: Price
  /** The most the requester agreed to pay, in millicredits. */
  maxCredits: number
  resultHash: Uint8Array
}

/**
 * Rejects a receipt that names another job or peer, another price, another
 * result, or more credits than the price and the agreed maximum allow.
 */
export function checkReceiptMatchesJob (body: ReceiptBody, terms: JobTerms): void {
  if (body.jobId !== terms.jobId) {
    throw new ReceiptError(`receipt names job ${body.jobId}, expected ${terms.jobId}`)
  }
  if (body.requester !== terms.requester || body.executor !== terms.executor) {
    throw new ReceiptError(`receipt for job ${body.jobId} names other peers than the job's`)
  }
  if (!bytesEqual(body.resultHash, terms.resultHash)) {
    throw new ReceiptError(`receipt for job ${body.jobId} covers another result than the one received`)
  }
  if (!samePrice(body.price, terms.price)) {
    throw new ReceiptError(`receipt for job ${body.jobId} uses another price than the accepted one`)
  }
  const due = creditsFor(body.resources, terms.price)
  if (body.credits > due || body.credits > terms.maxCredits) {
    throw new ReceiptError(`receipt for job ${body.jobId} claims ${body.credits} millicredits, but the accepted price allows ${Math.min(due, terms.maxCredits)}`)
  }
}

/**
 * The published price formula, in millicredits, rounded up:
 * CPU seconds x perCpuSecond + GiB of peak memory x wall seconds x perGibSecond
 * + agent tokens / 1000 x perThousandTokens.
 */
export function creditsFor (resources: MeteredResources, price: Price): number {
  const gibSeconds = (resources.peakMemoryBytes / 1024 ** 3) * resources.wallSeconds
  const tokens = resources.agentInputTokens + resources.agentOutputTokens
  const total = resources.cpuSeconds * price.perCpuSecond +
    gibSeconds * price.perGibSecond +
    (tokens / 1000) * price.perThousandTokens
  return Math.ceil(total)
}

/** The hash that identifies a receipt in ledgers and fork proofs. */
export function receiptHash (receipt: Receipt): Uint8Array {
  return sha256(receipt.body)
}

function samePrice (a: Price, b: Price): boolean {
  return a.perCpuSecond === b.perCpuSecond && a.perGibSecond === b.perGibSecond && a.perThousandTokens === b.perThousandTokens
}
