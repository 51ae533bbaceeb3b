import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { admitRequester } from '../credits/admission.js'
import { decodeChainSegment } from '../credits/chain.js'
import { decodeLedgerEntryBody } from '../credits/ledger-entry.js'
import { creditsFor, issueReceipt, verifyReceipt } from '../credits/receipt.js'
import { PROTOCOL_VERSION } from '../dht/capacity-record.js'
import { bytesEqual, decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { sha256 } from '../records/hash.js'
import { StageChannel, StageProtocolError } from './channel.js'
import { summarizeAgentLine } from './agent-progress.js'
import { chunkSchema, countersignedSchema, ledgerSegmentSchema, MAX_MESSAGE_BYTES, MAX_PAYLOAD_WITH_OFFER_BYTES, MAX_PROGRESS_LINE_CHARS, MAX_PROGRESS_LINES, offerSchema, payloadSchema, sealMessageSchema, STAGE_PROTOCOL } from './messages.js'
import { ChunkOpener, seal, SealError } from './sealing.js'
import type { AdmissionLedger, RequesterTrust } from '../credits/admission.js'
import type { ChainSegment, ChainState } from '../credits/chain.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { LedgerEntry } from '../credits/ledger-entry.js'
import type { JobTerms, Price, Receipt, ReceiptBody } from '../credits/receipt.js'
import type { Logger } from '../node/logger.js'
import type { Signer } from '../records/signature.js'
import type { CapacityLeases, Lease } from './leases.js'
import type { JobRegistry } from './job-registry.js'
import type { LedgerSegmentMessage, Offer, RejectReason, StageMessage, StagePayload, StageResultPayload } from './messages.js'
import type { RunningJobs } from './lost-jobs.js'
import type { ReplayGuard } from './replay-guard.js'
import type { RunnerProgress, RunnerResult, RunnerSpec, StageRunner } from './runner.js'
import type { EncryptionKeyPair } from '../node/identity.js'
import type { Libp2p, Stream } from '@libp2p/interface'


/** The ledger operations the stage protocol uses, on both sides; the node's Ledger has them. */
export interface StageLedger extends AdmissionLedger {
  append: (receipt: Receipt, terms: JobTerms) => Promise<LedgerEntry>
  recordWitness: (entry: LedgerEntry) => Promise<ForkProof | undefined>
  exportSegment: (fromSeq?: number, limit?: number) => Promise<ChainSegment>
  verifiedChain: (owner: string) => Promise<ChainState>
  head: () => { seq: number }
  verifiedBy: (peer: string) => number | undefined
  noteVerifiedBy: (peer: string, seq: number) => void
}

/** The parts the executor uses to check a requester's credit and trust before it takes a job. */
export interface CreditCheck {
  trust: RequesterTrust
  /** Fork proofs found in a requester's chain or witnesses; the node shares them and distrusts the forker. */
  onForkProofs?: (proofs: ForkProof[]) => void
}

export interface ExecutorTiming {
  offerTimeoutMs: number
  /** Time the requester has to send the whole payload after the accept. */
  leaseMs: number
  heartbeatMs: number
  /** Progress lines are batched and sent at most this often. */
  progressFlushMs: number
  countersignTimeoutMs: number
}

export const DEFAULT_EXECUTOR_TIMING: ExecutorTiming = {
  offerTimeoutMs: 5_000,
  leaseMs: 60_000,
  heartbeatMs: 2_000,
  progressFlushMs: 250,
  countersignTimeoutMs: 30_000
}

export interface ExecutorServiceInit {
  libp2p: Libp2p
  logger: Logger
  runner: StageRunner
  leases: CapacityLeases
  replay: ReplayGuard
  signer: Signer
  encryptionKey: EncryptionKeyPair
  price: () => Price
  /** Images and agents this executor runs; offers asking for others are rejected. */
  images: string[]
  agents: string[]
  ledger: StageLedger
  /** Without it, every requester is admitted whatever its balance, as on a devnet without credits. */
  credit?: CreditCheck
  /** Folder for the input archives of running jobs. */
  workDir: string
  /** Records each job while it runs, so that a restart after a crash can report the lost ones. */
  runningJobs?: Pick<RunningJobs, 'add' | 'remove'>
  maxPayloadBytes?: number
  maxStreamsPerPeer?: number
  timing?: Partial<ExecutorTiming>
  /** Receives the start, changes and end of every accepted job, for the dashboard and metrics. */
  jobs?: JobRegistry
}

/** Counters of what the executor did, for metrics and tests. */
export interface ExecutorStats {
  offers: number
  accepted: number
  rejected: Partial<Record<RejectReason, number>>
  completed: number
  violations: Partial<Record<string, number>>
  cancelledByRequester: number
  /** Ledger segments requested from requesters, which stays 0 while offers bring the right ones. */
  ledgerRequests: number
}

const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
const DEFAULT_MAX_STREAMS_PER_PEER = 4
/** Offers from one connection handled at once; libp2p resets streams beyond it. */
const MAX_INBOUND_STAGE_STREAMS = 256

/** A stage protocol failure that the executor reports with a reject before resetting. */
class JobRejected extends Error {
  readonly reason: RejectReason
  readonly retryAfterMs: number

  constructor (reason: RejectReason, message: string, retryAfterMs = 0) {
    super(message)
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

/**
 * The executor's side of `/emdx/stage/1.0.0`. For each offer it checks the
 * offer, the requester and its own capacity, takes a lease, receives and
 * opens the sealed payload, runs the stage in the sandbox while sending
 * progress and heartbeats, seals the result to the requester, and exchanges
 * the receipt. The lease is released and the input removed on every path.
 */
export class ExecutorService {
  readonly stats: ExecutorStats = { offers: 0, accepted: 0, rejected: {}, completed: 0, violations: {}, cancelledByRequester: 0, ledgerRequests: 0 }
  private readonly init: ExecutorServiceInit
  private readonly timing: ExecutorTiming
  private readonly logger: Logger
  private readonly streamsByPeer = new Map<string, number>()
  private readonly running = new Map<string, AbortController>()
  private readonly handlers = new Set<Promise<void>>()
  private stopping = false

  constructor (init: ExecutorServiceInit) {
    this.init = init
    this.timing = { ...DEFAULT_EXECUTOR_TIMING, ...init.timing }
    this.logger = init.logger
  }

  async start (): Promise<void> {
    await mkdir(this.init.workDir, { recursive: true, mode: 0o700 })
    await this.init.libp2p.handle(STAGE_PROTOCOL, (stream, connection) => {
      const handling = this.handle(stream, connection.remotePeer.toString()).finally(() => { this.handlers.delete(handling) })
      this.handlers.add(handling)
    }, { maxInboundStreams: MAX_INBOUND_STAGE_STREAMS, runOnLimitedConnection: false })
  }

  /** Stops taking offers, cancels running stages and waits for every job to end. */
  async stop (): Promise<void> {
    this.stopping = true
    await this.init.libp2p.unhandle(STAGE_PROTOCOL)
    for (const controller of this.running.values()) {
      controller.abort(new Error('the node is shutting down'))
    }
    await Promise.allSettled([...this.handlers])
  }

  private async handle (stream: Stream, peer: string): Promise<void> {
    const channel = new StageChannel(stream)
    const active = (this.streamsByPeer.get(peer) ?? 0) + 1
    this.streamsByPeer.set(peer, active)
    let jobId: string | undefined
    let lease: Lease | undefined
    let recorded = false
    // The sandbox is removed once the job has settled, so that removing it
    // does not slow the result and the receipt.
    let markSettled = (): void => {}
    const settled = new Promise<void>(resolve => { markSettled = resolve })

    try {
      const offer = await channel.read({ offer: { schema: offerSchema, maxBytes: MAX_MESSAGE_BYTES.offer } }, this.timing.offerTimeoutMs)
      jobId = offer.jobId
      this.stats.offers++
      if (active > (this.init.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER)) {
        throw new JobRejected('busy', `this executor runs at most ${this.init.maxStreamsPerPeer ?? DEFAULT_MAX_STREAMS_PER_PEER} jobs of one requester at a time`, 5_000)
      }
      lease = await this.admit(peer, offer)
      // What the requester sent with the offer comes next on the stream:
      // its ledger segment, then a small payload. Both are read before the
      // credit check, which may ask for another segment.
      const offered = offer.ledgerFromSeq === undefined
        ? undefined
        : await channel.read({ 'ledger-segment': { schema: ledgerSegmentSchema, maxBytes: MAX_MESSAGE_BYTES.offeredSegment } }, this.timing.offerTimeoutMs)
      const payload = offer.payloadFollows === true ? await this.receivePayload(channel, offer) : undefined
      await this.checkCredit(channel, peer, offer, offered)
      await this.init.runningJobs?.add(offer.jobId, peer)
      recorded = true
      await this.runJob(channel, peer, offer, lease, settled, payload)
    } catch (err) {
      this.init.jobs?.finish('executor', jobId, { state: 'failed', error: (err as Error).message })
      await this.fail(channel, peer, jobId, err)
    } finally {
      markSettled()
      if (lease !== undefined) {
        this.init.leases.release(lease.jobId)
      }
      if (recorded && jobId !== undefined) {
        await this.init.runningJobs?.remove(jobId).catch((err: unknown) => { this.logger.warn({ job: jobId, err }, 'failed to remove the record of a finished job') })
      }
      this.streamsByPeer.set(peer, (this.streamsByPeer.get(peer) ?? 1) - 1)
      if (this.streamsByPeer.get(peer) === 0) {
        this.streamsByPeer.delete(peer)
      }
    }
  }

  /** Checks an offer and reserves capacity for it; throws JobRejected otherwise. */
  private async admit (peer: string, offer: Offer): Promise<Lease> {
    if (this.stopping) {
      throw new JobRejected('shutting-down', 'this executor is shutting down', 30_000)
    }
    if (offer.version !== PROTOCOL_VERSION) {
      throw new JobRejected('incompatible', `this executor speaks stage protocol version ${PROTOCOL_VERSION}, not ${offer.version}`)
    }
    if (offer.needs.image !== undefined && !this.init.images.includes(offer.needs.image)) {
      throw new JobRejected('incompatible', `this executor does not run the image ${offer.needs.image}`)
    }
    if (offer.kind === 'agent' && (this.init.agents.length === 0 || (offer.needs.agent !== undefined && !this.init.agents.includes(offer.needs.agent)))) {
      throw new JobRejected('incompatible', `this executor does not offer the agent ${offer.needs.agent ?? '(any)'}`)
    }
    if (offer.payload.bytes > (this.init.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES)) {
      throw new JobRejected('payload', `the payload of ${offer.payload.bytes} bytes is over this executor's limit of ${this.init.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES}`)
    }
    if (offer.payloadFollows === true && offer.payload.bytes > MAX_PAYLOAD_WITH_OFFER_BYTES) {
      throw new JobRejected('payload', `a payload sent with the offer may have at most ${MAX_PAYLOAD_WITH_OFFER_BYTES} bytes, not ${offer.payload.bytes}; send it after the accept`)
    }

    // A job id seen before is a replay, whether or not capacity is free now.
    if (this.init.leases.active().some(held => held.jobId === offer.jobId)) {
      throw new JobRejected('replayed', `job ${offer.jobId} was offered here before`)
    }
    const lease = this.init.leases.tryReserve(offer.jobId, peer, offer.needs.cpus, offer.needs.memoryBytes)
    if (lease === undefined) {
      if (await this.init.replay.seen('job', offer.jobId)) {
        throw new JobRejected('replayed', `job ${offer.jobId} was offered here before`)
      }
      const free = this.init.leases.free()
      throw new JobRejected('full', `this executor has ${free.cpus} free CPUs and ${free.memoryBytes} bytes of free memory`, this.retryAfterFull())
    }
    if (!await this.init.replay.claim('job', offer.jobId)) {
      this.init.leases.release(offer.jobId)
      throw new JobRejected('replayed', `job ${offer.jobId} was offered here before`)
    }
    return lease
  }

  /**
   * Verifies the requester's ledger chain from the last entry this node
   * verified (inclusive, so a rewritten history shows as a fork) and admits
   * the job only if the requester's backed balance plus its credit line
   * covers the maximum it offered to pay. The segment that came with the
   * offer is used when it starts early enough. Otherwise, and for each
   * further part of a long chain, the executor requests a segment.
   */
  private async checkCredit (channel: StageChannel, peer: string, offer: Offer, offered?: LedgerSegmentMessage): Promise<void> {
    const credit = this.init.credit
    if (credit === undefined) {
      return
    }

    const known = await this.init.ledger.verifiedChain(peer)
    const from = Math.max(0, known.seq)
    let received = offered === undefined ? undefined : decodeRequesterSegment(offered, peer)
    if (received === undefined || !continuesFrom(received, offer.ledgerFromSeq ?? 0, known.seq)) {
      received = decodeRequesterSegment(await this.requestSegment(channel, offer.jobId, from), peer)
    }

    // A chain too long for one message comes in parts. Each part is kept as
    // it verifies, so a later offer starts after it.
    for (let part = 1; received.more; part++) {
      if (part >= MAX_SEGMENTS_PER_OFFER) {
        throw new JobRejected('credit', `the requester's ledger chain needs more than ${MAX_SEGMENTS_PER_OFFER} segments; offer again to continue from where this check stopped`, 1_000)
      }
      const { state, forkProofs } = await this.importSegment(received.segment)
      if (forkProofs.length > 0) {
        credit.onForkProofs?.(forkProofs)
        throw new JobRejected('distrusted', 'this executor does not take work from this requester')
      }
      received = decodeRequesterSegment(await this.requestSegment(channel, offer.jobId, state.seq), peer)
      if (received.lastSeq <= state.seq) {
        throw new JobRejected('credit', `invalid ledger segment: the part after entry ${state.seq} adds no entries`)
      }
    }

    let decision
    try {
      decision = await admitRequester(this.init.ledger, credit.trust, received.segment, offer.maxCredits)
    } catch (err) {
      throw new JobRejected('credit', `the requester's ledger chain does not verify: ${(err as Error).message}`)
    }
    if (decision.forkProofs.length > 0) {
      credit.onForkProofs?.(decision.forkProofs)
    }
    if (!decision.admitted) {
      const reason = decision.reason === 'distrusted' ? 'distrusted' : 'credit'
      const message = reason === 'distrusted'
        ? 'this executor does not take work from this requester'
        : `the requester can spend ${decision.available} millicredits, less than the ${offer.maxCredits} offered`
      throw new JobRejected(reason, message, reason === 'credit' ? 600_000 : 0)
    }
  }

  private async requestSegment (channel: StageChannel, jobId: string, fromSeq: number): Promise<LedgerSegmentMessage> {
    this.stats.ledgerRequests++
    await channel.write({ type: 'ledger-request', jobId, fromSeq })
    return await channel.read({ 'ledger-segment': { schema: ledgerSegmentSchema, maxBytes: MAX_MESSAGE_BYTES.ledgerSegment } }, this.timing.offerTimeoutMs)
  }

  /** Imports one part of a long chain, with more parts to follow. */
  private async importSegment (segment: ChainSegment): Promise<{ state: ChainState, forkProofs: ForkProof[] }> {
    try {
      return await this.init.ledger.importSegment(segment, { more: true })
    } catch (err) {
      throw new JobRejected('credit', `the requester's ledger chain does not verify: ${(err as Error).message}`)
    }
  }

  /** A guess at when capacity frees up: the heartbeat interval times the running jobs, 2 to 30 s. */
  private retryAfterFull (): number {
    return Math.min(30_000, Math.max(2_000, this.running.size * this.timing.heartbeatMs))
  }

  /** Runs an admitted job; `received` is the payload when it came with the offer. */
  private async runJob (channel: StageChannel, peer: string, offer: Offer, lease: Lease, settled: Promise<void>, received?: StagePayload): Promise<void> {
    const price = this.init.price()
    await channel.write({ type: 'accept', jobId: offer.jobId, price, heartbeatMs: this.timing.heartbeatMs, leaseMs: this.timing.leaseMs })
    this.stats.accepted++
    this.init.jobs?.begin({ jobId: offer.jobId, role: 'executor', peer, stage: offer.stage, kind: offer.kind, state: 'receiving' })
    const logger = this.logger.child({ job: offer.jobId, peer })
    logger.info({ kind: offer.kind, stage: offer.stage, cpus: lease.cpus }, 'accepted a stage')

    const payload = received ?? await this.receivePayload(channel, offer)
    this.init.jobs?.update('executor', offer.jobId, 'running')
    const startedAt = Date.now()
    const result = await this.execute(channel, offer, lease, payload, settled, logger)
    // The sandbox is done: its capacity is free for the next offer while the
    // result and the receipt are exchanged.
    this.init.leases.release(lease.jobId)
    const finishedAt = Math.max(startedAt, Date.now())
    this.init.jobs?.update('executor', offer.jobId, 'settling', result.outcome)

    const resultBytes = encodeCanonical(toResultPayload(result))
    const sealed = seal(resultBytes, offer.requesterKey, { jobId: offer.jobId, purpose: 'result' })
    await channel.write({ type: 'seal', purpose: 'result', ...sealed.header })
    for (const [index, data] of sealed.chunks.entries()) {
      await channel.write({ type: 'chunk', index, data })
    }

    const resultHash = sha256(resultBytes)
    const receipt = issueReceipt(this.receiptBody(peer, offer, price, result, resultHash, startedAt, finishedAt), this.init.signer)
    await channel.write({ type: 'receipt', receipt })
    const { countersigned, witness } = await this.awaitCountersignature(channel, receipt)
    const terms: JobTerms = { jobId: offer.jobId, requester: peer, executor: this.init.signer.peerId, price, maxCredits: offer.maxCredits, resultHash }
    const entry = await this.init.ledger.append(countersigned, terms)
    await channel.write({ type: 'entry', entry })
    if (witness !== undefined) {
      await this.recordWitness(witness, logger)
    }
    await channel.close().catch(() => {})
    this.stats.completed++
    this.init.jobs?.finish('executor', offer.jobId, { state: 'completed', outcome: result.outcome })
    logger.info({ outcome: result.outcome, wallMs: Math.round(result.metrics.wallTimeMs) }, 'finished a stage')
  }

  /** Receives the sealed payload; only this node's key opens it, and it must hash to the offer's hash. */
  private async receivePayload (channel: StageChannel, offer: Offer): Promise<StagePayload> {
    const header = await channel.read({ seal: { schema: sealMessageSchema, maxBytes: MAX_MESSAGE_BYTES.seal } }, this.timing.leaseMs)
    if (header.purpose !== 'payload' || header.totalBytes !== offer.payload.bytes) {
      throw new JobRejected('payload', `the payload header does not match the offer (${header.totalBytes} bytes, offered ${offer.payload.bytes})`)
    }
    if (!await this.init.replay.claim('key', Buffer.from(header.ephemeralKey).toString('hex'))) {
      throw new JobRejected('replayed', 'the payload reuses a key of an earlier payload')
    }

    let opener: ChunkOpener
    try {
      opener = new ChunkOpener(header, this.init.encryptionKey.secretKey, { jobId: offer.jobId, purpose: 'payload' }, offer.payload.bytes)
    } catch (err) {
      throw new JobRejected('payload', (err as Error).message)
    }
    const deadline = AbortSignal.timeout(this.timing.leaseMs)
    while (!opener.complete) {
      const chunk = await channel.read({ chunk: { schema: chunkSchema, maxBytes: MAX_MESSAGE_BYTES.chunk } }, this.timing.leaseMs, deadline)
      try {
        opener.open(chunk.data)
      } catch (err) {
        throw new JobRejected('payload', (err as Error).message)
      }
    }

    const plaintext = opener.finish()
    if (!bytesEqual(sha256(plaintext), offer.payload.hash)) {
      throw new JobRejected('payload', 'the payload does not match the hash in the offer')
    }
    let decoded: unknown
    try {
      decoded = decodeCanonical(plaintext, offer.payload.bytes)
    } catch (err) {
      throw new JobRejected('payload', `the payload is not valid: ${(err as Error).message}`)
    }
    const parsed = payloadSchema.safeParse(decoded)
    if (!parsed.success || parsed.data.kind !== offer.kind) {
      throw new JobRejected('payload', `the payload is not a valid ${offer.kind} stage`)
    }
    return parsed.data
  }

  /** Runs the stage, forwarding progress and heartbeats, and cancels it if the requester goes away. */
  private async execute (channel: StageChannel, offer: Offer, lease: Lease, payload: StagePayload, settled: Promise<void>, logger: Logger): Promise<RunnerResult> {
    const controller = new AbortController()
    this.running.set(offer.jobId, controller)
    const onClose = (): void => {
      if (!controller.signal.aborted) {
        this.stats.cancelledByRequester++
        logger.info('the requester went away; cancelling the stage')
        controller.abort(new Error('the requester closed the stream'))
      }
    }
    channel.stream.addEventListener('close', onClose)
    const inputPath = payload.workspace === undefined ? undefined : await this.writeInput(offer.jobId, payload.workspace)

    const forwarder = new ProgressForwarder(channel, this.timing, logger, offer.kind === 'agent')
    try {
      const spec: RunnerSpec = {
        jobId: offer.jobId,
        image: payload.kind === 'command' ? payload.image ?? offer.needs.image : offer.needs.image,
        command: payload.kind === 'command' ? payload.command : undefined,
        agent: payload.kind === 'agent' ? { prompt: payload.prompt, model: payload.model } : undefined,
        input: inputPath === undefined ? undefined : { archivePath: inputPath },
        env: payload.kind === 'command' ? payload.env : undefined,
        repository: payload.kind === 'agent' ? payload.repository : undefined,
        limits: { timeoutMs: offer.timeoutMs, memoryBytes: lease.memoryBytes, cpus: lease.cpus },
        signal: controller.signal,
        cleanupAfter: settled
      }
      const run = await this.init.runner.start(spec)
      forwarder.start()
      for await (const event of run.progress) {
        forwarder.add(event)
      }
      const result = await run.result
      await forwarder.stop()
      return result
    } finally {
      await forwarder.stop()
      channel.stream.removeEventListener('close', onClose)
      this.running.delete(offer.jobId)
      if (inputPath !== undefined) {
        await rm(path.dirname(inputPath), { recursive: true, force: true })
      }
    }
  }

  private async writeInput (jobId: string, archive: Uint8Array): Promise<string> {
    const dir = path.join(this.init.workDir, jobId)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const file = path.join(dir, 'input.tar')
    await writeFile(file, archive, { mode: 0o600 })
    return file
  }

  private receiptBody (peer: string, offer: Offer, price: Price, result: RunnerResult, resultHash: Uint8Array, startedAt: number, finishedAt: number): ReceiptBody {
    const resources = {
      cpuSeconds: result.metrics.cpuSeconds,
      wallSeconds: result.metrics.wallTimeMs / 1000,
      peakMemoryBytes: result.metrics.peakMemoryBytes,
      agentInputTokens: result.agent?.usage.inputTokens ?? 0,
      agentOutputTokens: result.agent?.usage.outputTokens ?? 0,
      agentCostUsd: result.agent?.usage.costUsd ?? 0
    }
    return {
      version: 1,
      jobId: offer.jobId,
      requester: peer,
      executor: this.init.signer.peerId,
      stage: offer.stage,
      kind: offer.kind,
      outcome: result.outcome,
      resources,
      price,
      credits: Math.min(creditsFor(resources, price), offer.maxCredits),
      resultHash,
      startedAt,
      finishedAt
    }
  }

  private async awaitCountersignature (channel: StageChannel, receipt: Receipt): Promise<{ countersigned: Receipt, witness?: LedgerEntry }> {
    const message = await channel.read({ countersigned: { schema: countersignedSchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, this.timing.countersignTimeoutMs)
    const returned: Receipt = message.receipt
    if (!bytesEqual(returned.body, receipt.body) || !bytesEqual(returned.executorSignature, receipt.executorSignature)) {
      throw new StageProtocolError('garbage', 'the countersigned receipt is not the receipt this executor issued')
    }
    verifyReceipt(returned, { countersigned: true })
    return { countersigned: returned, witness: message.entry }
  }

  /** Keeps the requester's ledger entry for this receipt; a conflicting one proves a fork. */
  private async recordWitness (entry: LedgerEntry, logger: Logger): Promise<void> {
    try {
      const proof = await this.init.ledger.recordWitness(entry)
      if (proof !== undefined) {
        logger.warn({ forker: proof.owner }, 'the requester forked its ledger chain')
        this.init.credit?.onForkProofs?.([proof])
      }
    } catch (err) {
      logger.warn({ err }, 'the requester sent a ledger entry that does not verify')
    }
  }

  /** Sends a reject for a failed job when the stream still allows it, then resets the stream. */
  private async fail (channel: StageChannel, peer: string, jobId: string | undefined, err: unknown): Promise<void> {
    if (err instanceof JobRejected) {
      this.stats.rejected[err.reason] = (this.stats.rejected[err.reason] ?? 0) + 1
      this.logger.info({ peer, job: jobId, reason: err.reason }, `rejected a stage offer: ${err.message}`)
      if (jobId !== undefined) {
        try {
          await channel.write({ type: 'reject', jobId, reason: err.reason, message: err.message.slice(0, 256), retryAfterMs: err.retryAfterMs }, AbortSignal.timeout(2_000))
          await channel.close(AbortSignal.timeout(2_000))
          return
        } catch {
          // The requester is gone; the reset below ends the stream.
        }
      }
      channel.abort(err)
      return
    }

    if (err instanceof StageProtocolError) {
      this.stats.violations[err.violation] = (this.stats.violations[err.violation] ?? 0) + 1
      this.logger.warn({ peer, job: jobId, violation: err.violation }, `reset a stage stream: ${err.message}`)
    } else if (err instanceof SealError) {
      this.stats.violations.seal = (this.stats.violations.seal ?? 0) + 1
      this.logger.warn({ peer, job: jobId }, `reset a stage stream: ${err.message}`)
    } else {
      this.logger.error({ peer, job: jobId, err }, 'a stage failed on this executor')
    }
    channel.abort(err as Error)
  }
}

/**
 * Batches progress lines into messages and sends a heartbeat whenever
 * nothing else went out for a heartbeat interval. Lines beyond what one flush
 * may carry are dropped and counted, so a chatty stage cannot flood the
 * requester.
 */
class ProgressForwarder {
  private readonly channel: StageChannel
  private readonly timing: ExecutorTiming
  private readonly logger: Logger
  private lines: Array<{ stream: 'stdout' | 'stderr', line: string }> = []
  private dropped = 0
  private state?: 'preparing' | 'running' | 'finishing' | 'finished'
  private lastSent = Date.now()
  private timer?: NodeJS.Timeout
  private sending: Promise<void> = Promise.resolve()
  private stopped = false
  private readonly agent: boolean

  /** `agent` turns the agent's stream-json on stdout into short lines for people. */
  constructor (channel: StageChannel, timing: ExecutorTiming, logger: Logger, agent: boolean) {
    this.channel = channel
    this.timing = timing
    this.logger = logger
    this.agent = agent
  }

  start (): void {
    this.timer = setInterval(() => { this.flush() }, this.timing.progressFlushMs)
  }

  add (event: RunnerProgress): void {
    if (event.type === 'state') {
      this.state = event.state
    } else if (event.type === 'dropped') {
      this.dropped += event.lines
    } else {
      const line = this.agent && event.stream === 'stdout' ? summarizeAgentLine(event.line) : event.line
      if (line === undefined) {
        return
      }
      if (this.lines.length < MAX_PROGRESS_LINES) {
        this.lines.push({ stream: event.stream, line: line.slice(0, MAX_PROGRESS_LINE_CHARS) })
      } else {
        this.dropped++
      }
    }
  }

  async stop (): Promise<void> {
    if (this.stopped) {
      return
    }
    this.stopped = true
    clearInterval(this.timer)
    this.flush(true)
    await this.sending
  }

  private flush (final = false): void {
    const now = Date.now()
    const hasNews = this.lines.length > 0 || this.state !== undefined || this.dropped > 0
    if (!hasNews && !final && now - this.lastSent < this.timing.heartbeatMs) {
      return
    }
    const message: StageMessage = hasNews
      ? { type: 'progress', state: this.state, lines: this.lines, dropped: this.dropped }
      : { type: 'heartbeat', at: now }
    this.lines = []
    this.dropped = 0
    this.state = undefined
    this.lastSent = now
    if (!hasNews && final) {
      return
    }
    this.sending = this.sending
      .then(async () => { await this.channel.write(message, AbortSignal.timeout(this.timing.heartbeatMs * 5)) })
      .catch((err: unknown) => { this.logger.debug({ err }, 'failed to send progress') })
  }
}

/** Maximum segments an executor takes for one offer: with 4,096 links each, chains of about a million entries. */
const MAX_SEGMENTS_PER_OFFER = 256

/** A requester's chain segment with the seq of its first and last entries (-1 when empty). */
interface ReceivedSegment {
  segment: ChainSegment
  firstSeq: number
  lastSeq: number
  more: boolean
}

/** Decodes a requester's segment; its signatures and links are checked when it is imported. */
function decodeRequesterSegment (message: LedgerSegmentMessage, peer: string): ReceivedSegment {
  try {
    const segment = decodeChainSegment(message.segment)
    if (segment.owner !== peer) {
      throw new Error(`it is the chain of ${segment.owner}, not of the requester`)
    }
    const first = segment.links[0]
    const last = segment.links.at(-1)
    return {
      segment,
      firstSeq: first === undefined ? -1 : decodeLedgerEntryBody(first.entry.body).seq,
      lastSeq: last === undefined ? -1 : decodeLedgerEntryBody(last.entry.body).seq,
      more: message.more === true
    }
  } catch (err) {
    throw new JobRejected('credit', `invalid ledger segment from the requester: ${(err as Error).message}`)
  }
}

/**
 * Tells whether a segment that the requester sent from `fromSeq` on can continue
 * a chain verified up to `knownSeq`: it starts at or before that entry, so
 * the two overlap, and it reaches the entry or sets `more`. An
 * empty segment fits only a chain this node has not seen, sent from the start.
 */
function continuesFrom (received: ReceivedSegment, fromSeq: number, knownSeq: number): boolean {
  if (received.segment.links.length === 0) {
    return knownSeq < 0 && fromSeq === 0 && !received.more
  }
  return received.firstSeq <= Math.max(0, knownSeq) && (received.more || received.lastSeq >= knownSeq)
}

function toResultPayload (result: RunnerResult): StageResultPayload {
  return {
    outcome: result.outcome,
    exitCode: result.exitCode,
    stdout: result.stdout,
    stdoutTruncated: result.stdoutTruncated,
    message: result.message.slice(0, 4096),
    metrics: result.metrics,
    agent: result.agent === undefined
      ? undefined
      : {
          output: result.agent.output,
          isError: result.agent.isError,
          inputTokens: result.agent.usage.inputTokens,
          outputTokens: result.agent.usage.outputTokens,
          costUsd: result.agent.usage.costUsd
        },
    bundle: result.bundle
  }
}
