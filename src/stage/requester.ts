import { randomBytes } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { encodeChainSegment, MAX_SEGMENT_BYTES, MAX_SEGMENT_LINKS } from '../credits/chain.js'
import { decodeLedgerEntryBody } from '../credits/ledger-entry.js'
import { checkReceiptMatchesJob, countersignReceipt, verifyReceipt } from '../credits/receipt.js'
import { PROTOCOL_VERSION } from '../dht/capacity-record.js'
import { EmdxError } from '../node/errors.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { sha256 } from '../records/hash.js'
import { StageChannel, StageProtocolError } from './channel.js'
import { acceptSchema, chunkSchema, entrySchema, heartbeatSchema, ledgerRequestSchema, MAX_MESSAGE_BYTES, MAX_PAYLOAD_WITH_OFFER_BYTES, MAX_SEGMENT_WITH_OFFER_BYTES, progressSchema, receiptMessageSchema, rejectSchema, resultSchema, sealMessageSchema, STAGE_PROTOCOL } from './messages.js'
import { ChunkOpener, seal, SealError } from './sealing.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { JobTerms, Price, Receipt, ReceiptBody } from '../credits/receipt.js'
import type { CapacityRecord } from '../dht/capacity-record.js'
import type { EncryptionKeyPair } from '../node/identity.js'
import type { Logger } from '../node/logger.js'
import type { Signer } from '../records/signature.js'
import type { StageLedger } from './executor-service.js'
import type { Accept, ProgressMessage, RejectReason, StageKind, StagePayload, StageResultPayload } from './messages.js'
import type { Libp2p } from '@libp2p/interface'

/** Why a remote stage did not produce a result; the cascade decides from it whether to retry. */
export type RemoteFailure =
  | 'rejected' // the executor rejected the offer or the payload; see `reason` and `retryAfterMs`
  | 'unreachable' // the dial or the protocol negotiation failed
  | 'silent' // no message within the heartbeat deadline: the executor is dead or cut off
  | 'protocol' // the executor broke the protocol or hung up
  | 'result' // the result or its receipt did not verify
  | 'cancelled' // the caller aborted

export class RemoteStageError extends EmdxError {
  readonly failure: RemoteFailure
  readonly executor: string
  readonly reason?: RejectReason
  readonly retryAfterMs?: number

  constructor (failure: RemoteFailure, executor: string, message: string, options?: ErrorOptions & { reason?: RejectReason, retryAfterMs?: number }) {
    super('ERR_REMOTE_STAGE', message, options)
    this.failure = failure
    this.executor = executor
    this.reason = options?.reason
    this.retryAfterMs = options?.retryAfterMs
  }
}

export interface RemoteStageTask {
  /** 32 hex digits; a fresh one when missing. The same id must not be offered twice to one executor. */
  jobId?: string
  kind: StageKind
  stage: string
  payload: StagePayload
  needs: { cpus: number, memoryBytes: number, image?: string, agent?: string }
  timeoutMs: number
  /** The maximum this requester pays, in millicredits. */
  maxCredits: number
}

export interface RemoteStageContext {
  libp2p: Libp2p
  signer: Signer
  encryptionKey: EncryptionKeyPair
  logger: Logger
  ledger: StageLedger
  /** Fork proofs found in an executor's witnesses; the node shares them and distrusts the forker. */
  onForkProofs?: (proofs: ForkProof[]) => void
}

export interface RemoteStageOptions {
  signal?: AbortSignal
  onAccepted?: (accept: Accept) => void
  onProgress?: (progress: ProgressMessage) => void
  /** Time allowed to dial and receive the accept or reject. */
  connectTimeoutMs?: number
  /** Largest result accepted, in bytes. */
  maxResultBytes?: number
  /**
   * Decides whether the result is worth paying for: a reason to refuse it,
   * or undefined to countersign. A refused result is not countersigned, so
   * the executor is not paid, and the call fails with `result`. It gets the
   * checkpoint too, so that a caller that refuses a result only for now can
   * still settle it later with `settleFromCheckpoint`. The executor waits
   * for the countersignature for a limited time (30 s by default), so an
   * asynchronous judge must decide well within it.
   */
  judgeResult?: (result: StageResultPayload, checkpoint: ResultCheckpoint) => string | undefined | Promise<string | undefined>
  /**
   * Called with the checked result and the executor's receipt before the
   * receipt is countersigned, so the caller can checkpoint them; after a
   * crash, `settleFromCheckpoint` countersigns from there.
   */
  onResult?: (checkpoint: ResultCheckpoint) => Promise<void>
}

/** The state a requester keeps between receiving a result and countersigning its receipt. */
export interface ResultCheckpoint {
  jobId: string
  executor: string
  result: StageResultPayload
  receipt: Receipt
  terms: JobTerms
}

export interface RemoteStageOutcome {
  jobId: string
  executor: string
  result: StageResultPayload
  receipt: Receipt
  receiptBody: ReceiptBody
  price: Price
}

/** Missed heartbeats after which the executor counts as dead. */
export const MISSED_HEARTBEATS = 3
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
/** Chain length below which the whole chain goes with the first offer to an executor this process has not met. */
const UNASKED_SEGMENT_LINKS = 64
/** Maximum ledger requests served for one offer; a long chain takes one per 4,096 entries. */
const MAX_LEDGER_REQUESTS = 512
const DEFAULT_MAX_RESULT_BYTES = 256 * 1024 * 1024
/** Time allowed, beyond the stage's own timeout, for starting the sandbox and returning the result. */
const RESULT_SLACK_MS = 60_000

/** Creates a job id: 16 random bytes in hex. */
export function newJobId (): string {
  return randomBytes(16).toString('hex')
}

/**
 * Runs one stage on a remote executor over `/emdx/stage/1.0.0`: offers it,
 * seals the payload to the executor's key from its capacity record, follows
 * progress and heartbeats, opens the result sealed to this node, checks the
 * receipt against the job, countersigns it and records it. Throws a
 * RemoteStageError naming what failed.
 */
export async function runRemoteStage (context: RemoteStageContext, executor: CapacityRecord, task: RemoteStageTask, options: RemoteStageOptions = {}): Promise<RemoteStageOutcome> {
  const jobId = task.jobId ?? newJobId()
  const peer = executor.peerId
  const logger = context.logger.child({ job: jobId, peer })
  const plaintext = encodeCanonical(task.payload)

  let channel: StageChannel
  try {
    const signal = anySignal(options.signal, AbortSignal.timeout(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS))
    channel = new StageChannel(await context.libp2p.dialProtocol(peerIdFromString(peer), STAGE_PROTOCOL, { signal }))
  } catch (err) {
    throw failure(err, options.signal, 'unreachable', peer, `cannot open a stage stream to ${peer}: ${(err as Error).message}`)
  }

  try {
    const payloadFollows = plaintext.byteLength <= MAX_PAYLOAD_WITH_OFFER_BYTES
    const accept = await offer(channel, peer, jobId, task, plaintext, context, options, payloadFollows ? executor.encryptionKey : undefined)
    logger.debug({ price: accept.price }, 'the executor accepted the stage')
    options.onAccepted?.(accept)

    if (!payloadFollows) {
      await sendPayload(channel, jobId, plaintext, executor.encryptionKey, options.signal)
    }
    const result = await receiveResult(channel, peer, jobId, task, accept, context, options)
    const receiptBody = await settle(channel, jobId, peer, task, accept, result, context, options)
    return { jobId, executor: peer, result: result.payload, receipt: receiptBody.receipt, receiptBody: receiptBody.body, price: accept.price }
  } catch (err) {
    channel.abort(err as Error)
    if (err instanceof RemoteStageError) {
      throw err
    }
    if (err instanceof StageProtocolError) {
      const kind = err.violation === 'timeout' ? 'silent' : 'protocol'
      throw failure(err, options.signal, kind, peer, `executor ${peer}: ${err.message}`)
    }
    throw failure(err, options.signal, 'protocol', peer, `stage on executor ${peer} failed: ${(err as Error).message}`)
  }
}

/**
 * Sends the offer, followed by a ledger segment when this node can guess
 * what the executor needs and by the payload when `payloadKey` is given.
 * Then serves the executor's ledger requests until it accepts or rejects.
 */
async function offer (channel: StageChannel, peer: string, jobId: string, task: RemoteStageTask, plaintext: Uint8Array, context: RemoteStageContext, options: RemoteStageOptions, payloadKey?: Uint8Array): Promise<Accept> {
  const ledgerFromSeq = segmentStartFor(peer, context.ledger)
  await channel.write({
    type: 'offer',
    version: PROTOCOL_VERSION,
    jobId,
    kind: task.kind,
    stage: task.stage,
    needs: task.needs,
    timeoutMs: task.timeoutMs,
    maxCredits: task.maxCredits,
    payload: { bytes: plaintext.byteLength, hash: sha256(plaintext) },
    requesterKey: context.encryptionKey.publicKey,
    ledgerFromSeq,
    payloadFollows: payloadKey === undefined ? undefined : true
  }, options.signal)
  let sentThrough = -1
  // Exported after the offer is written, so the export overlaps the executor's admission.
  const segment = ledgerFromSeq === undefined ? undefined : await encodeSegmentFrom(context.ledger, ledgerFromSeq, MAX_SEGMENT_WITH_OFFER_BYTES)
  if (segment !== undefined) {
    await channel.write({ type: 'ledger-segment', jobId, segment: segment.encoded, more: segment.more }, options.signal)
    sentThrough = segment.lastSeq
  }
  if (payloadKey !== undefined) {
    await sendPayload(channel, jobId, plaintext, payloadKey, options.signal)
  }

  const answers = {
    accept: { schema: acceptSchema, maxBytes: MAX_MESSAGE_BYTES.answer },
    reject: { schema: rejectSchema, maxBytes: MAX_MESSAGE_BYTES.answer },
    'ledger-request': { schema: ledgerRequestSchema, maxBytes: MAX_MESSAGE_BYTES.answer }
  }
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  let answer = await channel.read(answers, timeoutMs, options.signal)
  for (let requests = 1; answer.type === 'ledger-request'; requests++) {
    if (answer.jobId !== jobId || requests > MAX_LEDGER_REQUESTS) {
      throw new StageProtocolError('unexpected', `the executor requested the ledger chain ${requests} times or for another job; at most ${MAX_LEDGER_REQUESTS} are served`)
    }
    const requested = await encodeSegmentFrom(context.ledger, answer.fromSeq, MAX_SEGMENT_BYTES)
    await channel.write({ type: 'ledger-segment', jobId, segment: requested.encoded, more: requested.more }, options.signal)
    sentThrough = requested.lastSeq
    answer = await channel.read(answers, timeoutMs, options.signal)
  }

  if (answer.jobId !== jobId) {
    throw new StageProtocolError('unexpected', `the executor responded for job ${answer.jobId}`)
  }
  if (answer.type === 'reject') {
    throw new RemoteStageError('rejected', peer, `the executor rejected the stage (${answer.reason}): ${answer.message}`, { reason: answer.reason, retryAfterMs: answer.retryAfterMs })
  }
  if (sentThrough >= 0) {
    context.ledger.noteVerifiedBy(peer, sentThrough)
  }
  return answer
}

/**
 * Returns where the segment sent with an offer starts: where the executor
 * verified this node's chain before, or 0 when the whole chain is short.
 * Returns undefined when neither applies, so the executor requests a segment.
 */
function segmentStartFor (peer: string, ledger: StageLedger): number | undefined {
  const verified = ledger.verifiedBy(peer)
  if (verified !== undefined) {
    return verified
  }
  return ledger.head().seq < UNASKED_SEGMENT_LINKS ? 0 : undefined
}

/**
 * Encodes this node's ledger chain from `fromSeq` on, in at most `maxBytes`,
 * for an executor that checks its credit. A longer chain goes in parts: the
 * segment contains as many links as fit and sets `more`, and the executor
 * requests the rest.
 */
async function encodeSegmentFrom (ledger: StageLedger, fromSeq: number, maxBytes: number): Promise<{ encoded: Uint8Array, lastSeq: number, more?: true }> {
  const head = ledger.head().seq
  const segment = await ledger.exportSegment(fromSeq, MAX_SEGMENT_LINKS)
  let links = segment.links
  let encoded = encodeChainSegment(segment)
  while (encoded.byteLength > maxBytes && links.length > 1) {
    links = links.slice(0, Math.max(1, Math.floor(links.length * maxBytes / encoded.byteLength)))
    encoded = encodeChainSegment({ owner: segment.owner, links })
  }
  const last = links.at(-1)
  const lastSeq = last === undefined ? fromSeq - 1 : decodeLedgerEntryBody(last.entry.body).seq
  return { encoded, lastSeq, more: lastSeq < head ? true : undefined }
}

async function sendPayload (channel: StageChannel, jobId: string, plaintext: Uint8Array, executorKey: Uint8Array, signal?: AbortSignal): Promise<void> {
  const sealed = seal(plaintext, executorKey, { jobId, purpose: 'payload' })
  await channel.write({ type: 'seal', purpose: 'payload', ...sealed.header }, signal)
  for (const [index, data] of sealed.chunks.entries()) {
    await channel.write({ type: 'chunk', index, data }, signal)
  }
}

interface ReceivedResult {
  payload: StageResultPayload
  hash: Uint8Array
}

/** Follows progress until the sealed result arrives; silence longer than the heartbeat deadline fails. */
async function receiveResult (channel: StageChannel, peer: string, jobId: string, task: RemoteStageTask, accept: Accept, context: RemoteStageContext, options: RemoteStageOptions): Promise<ReceivedResult> {
  const silenceMs = accept.heartbeatMs * MISSED_HEARTBEATS
  const overall = anySignal(options.signal, AbortSignal.timeout(task.timeoutMs + RESULT_SLACK_MS))

  let header
  while (true) {
    const message = await channel.read({
      progress: { schema: progressSchema, maxBytes: MAX_MESSAGE_BYTES.progress },
      heartbeat: { schema: heartbeatSchema, maxBytes: MAX_MESSAGE_BYTES.answer },
      seal: { schema: sealMessageSchema, maxBytes: MAX_MESSAGE_BYTES.seal },
      // The executor rejects after the accept when the payload is not acceptable.
      reject: { schema: rejectSchema, maxBytes: MAX_MESSAGE_BYTES.answer }
    }, silenceMs, overall)
    if (message.type === 'reject') {
      throw new RemoteStageError('rejected', peer, `the executor rejected the payload (${message.reason}): ${message.message}`, { reason: message.reason, retryAfterMs: message.retryAfterMs })
    }
    if (message.type === 'progress') {
      options.onProgress?.(message)
    } else if (message.type === 'seal') {
      header = message
      break
    }
  }
  if (header.purpose !== 'result') {
    throw new StageProtocolError('unexpected', 'the executor sent a payload header in place of the result')
  }

  let opener: ChunkOpener
  try {
    opener = new ChunkOpener(header, context.encryptionKey.secretKey, { jobId, purpose: 'result' }, options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES)
    while (!opener.complete) {
      const chunk = await channel.read({ chunk: { schema: chunkSchema, maxBytes: MAX_MESSAGE_BYTES.chunk } }, silenceMs, overall)
      opener.open(chunk.data)
    }
  } catch (err) {
    if (err instanceof SealError) {
      throw new RemoteStageError('result', peer, `the result does not open: ${err.message}`, { cause: err })
    }
    throw err
  }

  const bytes = opener.finish()
  const parsed = resultSchema.safeParse(decodeOrUndefined(bytes))
  if (!parsed.success) {
    throw new RemoteStageError('result', peer, 'the result is not a valid stage result')
  }
  return { payload: parsed.data, hash: sha256(bytes) }
}

/** Checks the executor's receipt against the job and the result, countersigns it and records it. */
async function settle (channel: StageChannel, jobId: string, peer: string, task: RemoteStageTask, accept: Accept, result: ReceivedResult, context: RemoteStageContext, options: RemoteStageOptions): Promise<{ receipt: Receipt, body: ReceiptBody }> {
  const signal = options.signal
  const message = await channel.read({ receipt: { schema: receiptMessageSchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, accept.heartbeatMs * MISSED_HEARTBEATS, signal)

  let body: ReceiptBody
  try {
    body = verifyReceipt(message.receipt, { countersigned: false })
    checkReceiptMatchesJob(body, {
      jobId,
      requester: context.signer.peerId,
      executor: peer,
      price: accept.price,
      maxCredits: task.maxCredits,
      resultHash: result.hash
    })
    if (body.outcome !== result.payload.outcome || body.kind !== task.kind || body.stage !== task.stage) {
      throw new Error('the receipt describes another outcome, kind or stage than the result')
    }
  } catch (err) {
    throw new RemoteStageError('result', peer, `the receipt for job ${jobId} is not acceptable: ${(err as Error).message}`, { cause: err })
  }

  const terms: JobTerms = { jobId, requester: context.signer.peerId, executor: peer, price: accept.price, maxCredits: task.maxCredits, resultHash: result.hash }
  const checkpoint: ResultCheckpoint = { jobId, executor: peer, result: result.payload, receipt: message.receipt, terms }
  const refusal = await options.judgeResult?.(result.payload, checkpoint)
  if (refusal !== undefined) {
    throw new RemoteStageError('result', peer, `the result of job ${jobId} is not accepted, so its receipt is not countersigned: ${refusal}`)
  }
  await options.onResult?.(checkpoint)

  const countersigned = countersignReceipt(message.receipt, context.signer)
  // Recorded before it is sent: once the executor has the countersignature,
  // the requester owes the credits whether or not the next message arrives.
  const entry = await context.ledger.append(countersigned, terms)
  await channel.write({ type: 'countersigned', receipt: countersigned, entry }, signal)
  // The executor's entry comes after its own ledger append; the stage is
  // done and paid, so the caller does not wait for it.
  void receiveWitness(channel, peer, accept, context).finally(() => { channel.close().catch(() => {}) })
  return { receipt: countersigned, body }
}

/** Keeps the executor's ledger entry for the receipt; a conflicting one proves a fork. */
async function receiveWitness (channel: StageChannel, peer: string, accept: Accept, context: RemoteStageContext, signal?: AbortSignal): Promise<void> {
  try {
    const message = await channel.read({ entry: { schema: entrySchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, accept.heartbeatMs * MISSED_HEARTBEATS, signal)
    const proof = await context.ledger.recordWitness(message.entry)
    if (proof !== undefined) {
      context.logger.warn({ forker: proof.owner }, 'the executor forked its ledger chain')
      context.onForkProofs?.([proof])
    }
  } catch (err) {
    // The stage is done and paid; a missing witness only weakens fork detection.
    context.logger.debug({ peer, err }, 'no ledger entry from the executor')
  }
}

function decodeOrUndefined (bytes: Uint8Array): unknown {
  try {
    return decodeCanonical(bytes, bytes.byteLength)
  } catch {
    return undefined
  }
}

function anySignal (...signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((signal): signal is AbortSignal => signal !== undefined))
}

function failure (err: unknown, signal: AbortSignal | undefined, kind: RemoteFailure, peer: string, message: string): RemoteStageError {
  if (signal?.aborted === true) {
    return new RemoteStageError('cancelled', peer, 'the stage was cancelled', { cause: err })
  }
  return new RemoteStageError(kind, peer, message, { cause: err })
}
