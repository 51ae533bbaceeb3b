import { z } from 'zod'
import { priceSchema, stageOutcomeSchema } from '../credits/receipt.js'
import { bytesSchema, timestampSchema } from '../records/schema.js'
import { HASH_BYTES } from '../records/hash.js'
import { SIGNATURE_BYTES } from '../records/signature.js'
import { STAGES } from '../cascade/stages.js'
import { MAX_SEGMENT_BYTES } from '../credits/chain.js'
import { CHUNK_BYTES, KEY_BYTES, MAC_BYTES } from './sealing.js'

/**
 * The messages of `/emdx/stage/1.0.0`. One stream carries one job, in this
 * order:
 *
 *   requester                         executor
 *   offer                 ->
 *   ledger-segment        ->          (when the offer names `ledgerFromSeq`)
 *   seal, chunk x N       ->          (payload, when the offer sets `payloadFollows`)
 *                         <-          ledger-request (when it checks credit
 *   ledger-segment        ->           and needs other or more entries)
 *                         <-          accept | reject
 *   seal (payload)        ->          (unless it came with the offer)
 *   chunk x N             ->
 *                         <-          progress | heartbeat, repeated
 *                         <-          seal (result), chunk x N
 *                         <-          receipt (signed by the executor)
 *   countersigned         ->          (with the requester's ledger entry)
 *                         <-          entry (the executor's ledger entry)
 *
 * Each message is a canonical CBOR map with a `type`, sent length-prefixed.
 * A reader checks the size limit of the type it expects before decoding,
 * then the schema; anything else resets the stream.
 */
export const STAGE_PROTOCOL = '/emdx/stage/1.0.0'

const jobId = z.string().regex(/^[0-9a-f]{32}$/, 'expected 32 lower-case hex digits')
const shortText = z.string().max(256)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

export const stageKindSchema = z.enum(['agent', 'command'])
export type StageKind = z.infer<typeof stageKindSchema>

export const offerSchema = z.strictObject({
  type: z.literal('offer'),
  version: z.number().int().min(1).max(1000),
  jobId,
  kind: stageKindSchema,
  stage: z.string().min(1).max(64),
  needs: z.strictObject({
    cpus: z.number().positive().max(4096),
    memoryBytes: z.number().int().positive(),
    image: z.string().min(1).max(128).optional(),
    agent: z.string().min(1).max(64).optional()
  }),
  /** Wall-clock limit of the stage, 1 s to 24 h. */
  timeoutMs: z.number().int().min(1000).max(86_400_000),
  /** The most the requester will pay, in millicredits. */
  maxCredits: count,
  payload: z.strictObject({ bytes: count, hash: bytesSchema(HASH_BYTES) }),
  /** X25519 key the result is sealed to. */
  requesterKey: bytesSchema(KEY_BYTES),
  /**
   * A ledger-segment of the requester's chain from this entry on follows the
   * offer, so that an executor that checks credit need not request it. The
   * requester starts where the executor verified its chain before, as far as
   * it has seen.
   */
  ledgerFromSeq: count.optional(),
  /**
   * The sealed payload follows the offer (and its segment) at once. Not
   * waiting for the accept saves a round trip. Only payloads of at most
   * MAX_PAYLOAD_WITH_OFFER_BYTES may come this way.
   */
  payloadFollows: z.literal(true).optional()
})
export type Offer = z.infer<typeof offerSchema>

export const acceptSchema = z.strictObject({
  type: z.literal('accept'),
  jobId,
  price: priceSchema,
  /** The executor sends a heartbeat at least this often while the stage runs. */
  heartbeatMs: z.number().int().min(100).max(60_000),
  /** The payload must arrive within this time, or the lease ends. */
  leaseMs: z.number().int().min(1000).max(600_000)
})
export type Accept = z.infer<typeof acceptSchema>

export const rejectReasonSchema = z.enum([
  'full', 'busy', 'credit', 'distrusted', 'incompatible', 'replayed', 'invalid', 'payload', 'shutting-down', 'internal'
])
export type RejectReason = z.infer<typeof rejectReasonSchema>

export const rejectSchema = z.strictObject({
  type: z.literal('reject'),
  jobId,
  reason: rejectReasonSchema,
  message: shortText,
  /** When it makes sense to offer again; 0 when it never does. */
  retryAfterMs: z.number().int().nonnegative().max(86_400_000)
})
export type Reject = z.infer<typeof rejectSchema>

export const sealMessageSchema = z.strictObject({
  type: z.literal('seal'),
  purpose: z.enum(['payload', 'result']),
  ephemeralKey: bytesSchema(KEY_BYTES),
  totalBytes: count,
  chunkCount: z.number().int().positive().max(1_000_000)
})
export type SealMessage = z.infer<typeof sealMessageSchema>

export const chunkSchema = z.strictObject({
  type: z.literal('chunk'),
  index: z.number().int().nonnegative().max(1_000_000),
  data: bytesSchema()
})
export type ChunkMessage = z.infer<typeof chunkSchema>

export const MAX_PROGRESS_LINES = 20
export const MAX_PROGRESS_LINE_CHARS = 1024

export const progressSchema = z.strictObject({
  type: z.literal('progress'),
  state: z.enum(['preparing', 'running', 'finishing', 'finished']).optional(),
  lines: z.array(z.strictObject({ stream: z.enum(['stdout', 'stderr']), line: z.string().max(MAX_PROGRESS_LINE_CHARS) })).max(MAX_PROGRESS_LINES),
  /** Log lines the executor dropped to stay within its limits. */
  dropped: count
})
export type ProgressMessage = z.infer<typeof progressSchema>

export const heartbeatSchema = z.strictObject({
  type: z.literal('heartbeat'),
  at: timestampSchema
})

/** The executor asks for the requester's ledger chain from a sequence number on, to check its credit. */
export const ledgerRequestSchema = z.strictObject({
  type: z.literal('ledger-request'),
  jobId,
  fromSeq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
})

export const ledgerSegmentSchema = z.strictObject({
  type: z.literal('ledger-segment'),
  jobId,
  /** The encoded chain segment; see `encodeChainSegment`. */
  segment: bytesSchema(),
  /** Set when the chain continues after this segment, so the executor requests the rest from its last entry. */
  more: z.boolean().optional()
})

const ledgerEntryWire = z.strictObject({ body: bytesSchema(), signature: bytesSchema(SIGNATURE_BYTES) })

/** A side's own signed ledger entry for the job's receipt, kept by the other side as a witness. */
export const entrySchema = z.strictObject({ type: z.literal('entry'), entry: ledgerEntryWire })

const receiptWire = z.strictObject({
  body: bytesSchema(),
  executorSignature: bytesSchema(SIGNATURE_BYTES),
  requesterSignature: bytesSchema(SIGNATURE_BYTES).optional()
})

export const receiptMessageSchema = z.strictObject({ type: z.literal('receipt'), receipt: receiptWire })
export const countersignedSchema = z.strictObject({ type: z.literal('countersigned'), receipt: receiptWire, entry: ledgerEntryWire.optional() })

/**
 * The largest payload a requester sends with its offer. An executor reads
 * such payloads, and the segments that come with offers, into memory before
 * it has accepted anything, so both are kept small.
 */
export const MAX_PAYLOAD_WITH_OFFER_BYTES = 64 * 1024
export const MAX_SEGMENT_WITH_OFFER_BYTES = 128 * 1024

/** Upper bound of each message type's encoded size, checked before decoding. */
export const MAX_MESSAGE_BYTES = {
  offer: 2048,
  answer: 1024,
  seal: 256,
  chunk: CHUNK_BYTES + MAC_BYTES + 64,
  progress: MAX_PROGRESS_LINES * (MAX_PROGRESS_LINE_CHARS * 4 + 32) + 256,
  receipt: 8192,
  ledgerSegment: MAX_SEGMENT_BYTES + 1024,
  offeredSegment: MAX_SEGMENT_WITH_OFFER_BYTES + 1024
} as const

/** Plaintext of a payload: what the executor runs. */
export const payloadSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('command'),
    command: z.array(z.string().max(4096)).min(1).max(256),
    image: z.string().min(1).max(128).optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/), z.string().max(4096)).optional(),
    /** A tar archive unpacked into the workspace before the command runs. */
    workspace: bytesSchema().optional()
  }),
  z.strictObject({
    kind: z.literal('agent'),
    prompt: z.string().min(1).max(1024 * 1024),
    model: z.string().min(1).max(128).optional(),
    workspace: bytesSchema().optional(),
    /**
     * A git bundle of one branch of the requester's repository. The executor
     * checks it out as the workspace on branch `cascade/{docId}/{stage}`,
     * commits what the agent changed, and returns a bundle of that branch.
     */
    repository: z.strictObject({
      bundle: bytesSchema(),
      docId: z.number().int().nonnegative(),
      stage: z.enum(STAGES)
    }).optional()
  })
])
export type StagePayload = z.infer<typeof payloadSchema>

/** Plaintext of a result: what happened, measured by the executor. */
export const resultSchema = z.strictObject({
  outcome: stageOutcomeSchema,
  exitCode: z.number().int().min(-1024).max(1024).nullable(),
  stdout: z.string(),
  stdoutTruncated: z.boolean(),
  message: z.string().max(4096),
  metrics: z.strictObject({
    cpuSeconds: z.number().nonnegative().finite(),
    wallTimeMs: z.number().nonnegative().finite(),
    peakMemoryBytes: count
  }),
  agent: z.strictObject({
    output: z.string(),
    isError: z.boolean(),
    inputTokens: count,
    outputTokens: count,
    costUsd: z.number().nonnegative().finite()
  }).optional(),
  /** Files the stage produced, as a tar archive, when the stage asked for them. */
  workspace: bytesSchema().optional(),
  /** A bundle of the branch the executor committed the agent's changes to, for payloads with a repository. */
  bundle: bytesSchema().optional()
})
export type StageResultPayload = z.infer<typeof resultSchema>

export type HeartbeatMessage = z.infer<typeof heartbeatSchema>
export type ReceiptMessage = z.infer<typeof receiptMessageSchema>
export type CountersignedMessage = z.infer<typeof countersignedSchema>
export type LedgerRequestMessage = z.infer<typeof ledgerRequestSchema>
export type LedgerSegmentMessage = z.infer<typeof ledgerSegmentSchema>
export type EntryMessage = z.infer<typeof entrySchema>

/** Every message of the stage protocol. */
export type StageMessage = Offer | Accept | Reject | SealMessage | ChunkMessage | ProgressMessage | HeartbeatMessage | ReceiptMessage | CountersignedMessage | LedgerRequestMessage | LedgerSegmentMessage | EntryMessage
