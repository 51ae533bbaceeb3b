import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { createBundle, fetchResult } from '../git/requester.js'
import { writeStageOutput } from '../knowledge/stage-output.js'
import { EmdxError } from '../node/errors.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { buildPrompt } from './prompts.js'
import { resolveRunPlan } from './stages.js'
import type { CascadeEvents } from './events.js'
import type { Stage } from './stages.js'
import type { CascadeRecord, CascadeStore, Transform } from './store.js'
import type { Git } from '../git/git.js'
import type { DocumentStore, KnowledgeDocument } from '../knowledge/document-store.js'
import type { Logger } from '../node/logger.js'
import type { DispatchEvent } from '../stage/dispatcher.js'
import type { ResultCheckpoint } from '../stage/requester.js'

/** A cascade request that cannot run as given; the message names the field and the fix. */
export class CascadeRequestError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_CASCADE_REQUEST', message, options)
  }
}

/** A request of `emdx cascade add` and `POST /api/v1/cascade`. */
export interface CascadeRequest {
  /** The idea, or the text of the starting document. */
  content?: string
  /** Start from this existing document instead of a new one. */
  documentId?: number
  title?: string
  stage?: Stage
  auto?: boolean
  stop?: Stage
  analyze?: boolean
  plan?: boolean
  /** Run every stage on other nodes; otherwise in this node's sandbox. */
  remote: boolean
  repo?: string
  model?: string
  project?: string
  timeoutMs?: number
  cpus?: number
  memoryBytes?: number
  /** The maximum one stage may cost, in millicredits. */
  maxCredits?: number
  callbackUrl?: string
}

/** One agent transform, as the pipeline hands it to a runner. */
export interface TransformRequest {
  cascadeId: string
  from: Stage
  to: Stage
  prompt: string
  model?: string
  repository?: { bundle: Uint8Array, docId: number, stage: Stage }
  timeoutMs: number
  cpus: number
  memoryBytes: number
  maxCredits: number
}

export interface TransformHooks {
  signal: AbortSignal
  onEvent: (event: DispatchEvent) => void
  /** Called before each offer, with the job id, so the attempt is checkpointed first. */
  beforeOffer: (jobId: string, provider: string) => Promise<void>
  /** Called with the result before it is paid for, so it is checkpointed first. */
  onResult: (checkpoint: ResultCheckpoint) => Promise<void>
}

export interface TransformResult {
  output: string
  jobId: string
  provider?: string
  credits?: number
  bundle?: Uint8Array
}

/** Runs one agent transform: on other nodes, or in this node's sandbox. */
export interface TransformRunner {
  run: (request: TransformRequest, hooks: TransformHooks) => Promise<TransformResult>
}

export interface CascadeServiceInit {
  store: CascadeStore
  documents: DocumentStore
  events: CascadeEvents
  logger: Logger
  /** Runs transforms on the network; without it `--remote p2p` is rejected. */
  remote?: TransformRunner
  /** Runs transforms in this node's sandbox; without it local cascades are rejected. */
  local?: TransformRunner
  git: Git
  /** Countersigns and records a checkpointed receipt after a restart. */
  settle: (checkpoint: ResultCheckpoint) => Promise<void>
  /** Folder for the bundles of running cascades. */
  workDir: string
}

/** Limits of each stage unless the request sets them; 512 MiB fits the agent CLI with room to spare. */
export const DEFAULT_CASCADE_LIMITS = {
  timeoutMs: 15 * 60_000,
  cpus: 1,
  memoryBytes: 512 * 1024 ** 2,
  maxCredits: 50_000
}

/**
 * Runs cascades: one transform after another, each on a provider found by
 * discovery (or in this node's sandbox), writing each output document into
 * the knowledge base and each branch into the user's repository. Every
 * transition is checkpointed before it is acted on, so `resume` continues
 * an unfinished cascade after a restart without running a completed stage
 * again or paying twice.
 */
export class CascadeService {
  private readonly init: CascadeServiceInit
  private readonly logger: Logger
  private readonly running = new Map<string, { controller: AbortController, done: Promise<void> }>()
  private stopped = false

  constructor (init: CascadeServiceInit) {
    this.init = init
    this.logger = init.logger
  }

  /** Checks and records a cascade, starts it in the background and returns its first checkpoint. */
  async submit (request: CascadeRequest): Promise<CascadeRecord> {
    const record = await this.createRecord(request)
    await this.init.store.save(record)
    this.emit({ type: 'cascade_created', cascadeId: record.id, title: record.title })
    this.start(record)
    return record
  }

  /** Continues every unfinished cascade that is not running here, as after a restart; returns how many. */
  async resume (): Promise<number> {
    const unfinished = (await this.init.store.unfinished()).filter(record => !this.running.has(record.id))
    for (const record of unfinished) {
      this.logger.info({ cascade: record.id }, 'resuming a cascade from its last checkpoint')
      this.start(record)
    }
    return unfinished.length
  }

  async get (id: string): Promise<CascadeRecord | undefined> {
    return await this.init.store.get(id)
  }

  async list (): Promise<CascadeRecord[]> {
    return await this.init.store.list()
  }

  /** Cancels a running cascade; returns false when it is not running. */
  async cancel (id: string): Promise<boolean> {
    const run = this.running.get(id)
    if (run === undefined) {
      return false
    }
    run.controller.abort(new Error('cancelled by the user'))
    await run.done
    return true
  }

  /** Stops every running cascade without marking it cancelled, so `resume` continues it later. */
  async stop (): Promise<void> {
    this.stopped = true
    for (const run of this.running.values()) {
      run.controller.abort(new Error('the node is stopping'))
    }
    await Promise.allSettled([...this.running.values()].map(async run => { await run.done }))
  }

  /** Waits until a cascade is no longer running here; for tests and the CLI. */
  async settled (id: string): Promise<void> {
    await this.running.get(id)?.done
  }

  private async createRecord (request: CascadeRequest): Promise<CascadeRecord> {
    const plan = resolveRunPlan(request)
    if (request.remote && this.init.remote === undefined) {
      throw new CascadeRequestError('this node cannot send stages to the network; run the cascade without --remote to use this node\'s sandbox')
    }
    if (!request.remote && this.init.local === undefined) {
      throw new CascadeRequestError('this node has no sandbox to run stages in; pass --remote p2p to run them on other nodes, or install Docker or bubblewrap')
    }
    if (request.documentId === undefined && (request.content === undefined || request.content.trim() === '')) {
      throw new CascadeRequestError('a cascade needs content (the idea) or a document id to start from')
    }

    const now = new Date().toISOString()
    return {
      id: randomBytes(8).toString('hex'),
      title: (request.title ?? titleFrom(request.content ?? `document ${request.documentId ?? ''}`)).trim(),
      content: request.content ?? '',
      project: request.project,
      startStage: plan.start,
      stopStage: plan.stop,
      remote: request.remote,
      repo: request.repo === undefined ? undefined : path.resolve(request.repo),
      model: request.model,
      timeoutMs: request.timeoutMs ?? DEFAULT_CASCADE_LIMITS.timeoutMs,
      cpus: request.cpus ?? DEFAULT_CASCADE_LIMITS.cpus,
      memoryBytes: request.memoryBytes ?? DEFAULT_CASCADE_LIMITS.memoryBytes,
      maxCredits: request.maxCredits ?? DEFAULT_CASCADE_LIMITS.maxCredits,
      callbackUrl: request.callbackUrl,
      status: 'running',
      rootDocumentId: request.documentId,
      transforms: plan.transforms.map(({ from, to }) => ({ from, to, state: 'pending', attempts: [] })),
      createdAt: now,
      updatedAt: now
    }
  }

  private start (record: CascadeRecord): void {
    const controller = new AbortController()
    const done = this.run(record, controller.signal)
      .catch((err: unknown) => { this.logger.error({ cascade: record.id, err }, 'a cascade ended with an unexpected error') })
      .finally(() => { this.running.delete(record.id) })
    this.running.set(record.id, { controller, done })
  }

  private async run (record: CascadeRecord, signal: AbortSignal): Promise<void> {
    try {
      const root = await this.rootDocument(record)
      if (record.runId === undefined) {
        record.runId = await this.init.documents.startRun({ startDocId: root.id, startStage: record.startStage, stopStage: record.stopStage })
        await this.init.store.save(record)
      }

      let input = root
      let branch: string | undefined
      for (const transform of record.transforms) {
        if (transform.state !== 'completed') {
          await this.runTransform(record, transform, input, branch, signal)
        }
        input = await this.requireDocument(transform.outputDocumentId, record)
        branch = transform.branch ?? branch
      }

      record.status = 'completed'
      await this.init.store.save(record)
      if (record.runId !== undefined) {
        await this.init.documents.finishRun(record.runId, 'completed')
      }
      this.emit({ type: 'cascade_completed', cascadeId: record.id, documentId: input.id })
    } catch (err) {
      await this.end(record, err, signal)
    }
  }

  private async end (record: CascadeRecord, err: unknown, signal: AbortSignal): Promise<void> {
    if (signal.aborted && this.stopped) {
      // The node is stopping: the cascade stays `running` and resumes at the next start.
      return
    }
    const failed = record.transforms.find(transform => transform.state !== 'completed')
    if (signal.aborted) {
      record.status = 'cancelled'
      if (failed !== undefined) {
        failed.state = 'cancelled'
      }
      await this.init.store.save(record)
      if (record.runId !== undefined) {
        await this.init.documents.finishRun(record.runId, 'failed', 'cancelled')
      }
      this.emit({ type: 'cascade_cancelled', cascadeId: record.id })
      return
    }

    const reason = (err as Error).message
    record.status = 'failed'
    record.error = reason
    if (failed !== undefined) {
      failed.state = 'failed'
      failed.error = reason
    }
    await this.init.store.save(record)
    if (record.runId !== undefined) {
      await this.init.documents.finishRun(record.runId, 'failed', reason).catch(() => {})
    }
    this.logger.warn({ cascade: record.id, stage: failed?.from }, `a cascade failed: ${reason}`)
    this.emit({ type: 'cascade_failed', cascadeId: record.id, from: failed?.from, reason })
  }

  /** Runs one transform from its last checkpoint to `completed`. */
  private async runTransform (record: CascadeRecord, transform: Transform, input: KnowledgeDocument, branch: string | undefined, signal: AbortSignal): Promise<void> {
    let result: TransformResult
    if (transform.state === 'result-received' && transform.pendingResult !== undefined) {
      result = await this.settleCheckpoint(transform)
    } else {
      transform.state = 'dispatched'
      transform.startedAt = new Date().toISOString()
      await this.init.store.save(record)
      result = await this.execute(record, transform, input, branch, signal)
    }

    if (result.bundle !== undefined && record.repo !== undefined) {
      transform.branch = await this.fetchBranch(record, transform, input, result.bundle, signal)
    }
    const document = await this.writeOutput(record, transform, input, result.output)

    transform.state = 'completed'
    transform.finishedAt = new Date().toISOString()
    transform.outputDocumentId = document.id
    transform.provider = result.provider ?? transform.provider
    transform.credits = result.credits
    transform.pendingResult = undefined
    await this.init.store.save(record)
    this.emit({ type: 'stage_completed', cascadeId: record.id, from: transform.from, to: transform.to, provider: transform.provider, documentId: document.id, title: document.title, credits: result.credits, branch: transform.branch })
  }

  private async execute (record: CascadeRecord, transform: Transform, input: KnowledgeDocument, branch: string | undefined, signal: AbortSignal): Promise<TransformResult> {
    const runner = record.remote ? this.init.remote : this.init.local
    if (runner === undefined) {
      throw new CascadeRequestError(record.remote ? 'this node cannot send stages to the network' : 'this node has no sandbox to run stages in')
    }

    const repository = record.repo === undefined ? undefined : await this.bundleRepository(record, transform, input, branch, signal)
    const prompt = buildPrompt({ stage: transform.from, title: record.title, content: input.content, branch: repository === undefined ? undefined : `cascade/${input.id}/${transform.from}` })
    return await runner.run({
      cascadeId: record.id,
      from: transform.from,
      to: transform.to,
      prompt,
      model: record.model,
      repository,
      timeoutMs: record.timeoutMs,
      cpus: record.cpus,
      memoryBytes: record.memoryBytes,
      maxCredits: record.maxCredits
    }, {
      signal,
      onEvent: (event) => { this.forward(record, transform, event) },
      beforeOffer: async (jobId, provider) => {
        transform.jobId = jobId
        transform.provider = provider
        transform.attempts.push({ jobId, provider, startedAt: new Date().toISOString() })
        await this.init.store.save(record)
      },
      onResult: async (checkpoint) => {
        transform.state = 'result-received'
        transform.pendingResult = Buffer.from(encodeCanonical(checkpoint)).toString('base64')
        await this.init.store.save(record)
      }
    })
  }

  /** Pays for a result checkpointed before a restart and returns it as if it had just arrived. */
  private async settleCheckpoint (transform: Transform): Promise<TransformResult> {
    const checkpoint = decodeCanonical(Buffer.from(transform.pendingResult ?? '', 'base64'), 512 * 1024 * 1024) as ResultCheckpoint
    await this.init.settle(checkpoint)
    return {
      output: checkpoint.result.agent?.output ?? checkpoint.result.stdout,
      jobId: checkpoint.jobId,
      provider: checkpoint.executor,
      bundle: checkpoint.result.bundle
    }
  }

  private async bundleRepository (record: CascadeRecord, transform: Transform, input: KnowledgeDocument, branch: string | undefined, signal: AbortSignal): Promise<TransformRequest['repository']> {
    const dir = path.join(this.init.workDir, record.id)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const outFile = path.join(dir, `${transform.from}.bundle`)
    const bundle = await createBundle({ git: this.init.git, repoDir: record.repo as string, branch, outFile, signal })
    transform.baseCommit = bundle.commit
    try {
      return { bundle: await readFile(bundle.bundlePath), docId: input.id, stage: transform.from }
    } finally {
      await rm(outFile, { force: true })
    }
  }

  private async fetchBranch (record: CascadeRecord, transform: Transform, input: KnowledgeDocument, bundle: Uint8Array, signal: AbortSignal): Promise<string> {
    const dir = path.join(this.init.workDir, record.id)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const bundlePath = path.join(dir, `${transform.from}.result.bundle`)
    await writeFile(bundlePath, bundle, { mode: 0o600 })
    try {
      const fetched = await fetchResult({ git: this.init.git, repoDir: record.repo as string, bundlePath, docId: input.id, stage: transform.from, baseCommit: transform.baseCommit, signal })
      return fetched.branch
    } finally {
      await rm(bundlePath, { force: true })
    }
  }

  /**
   * Writes the output document, or finds the one an earlier run of this
   * transform wrote just before a crash, so a restart never duplicates it.
   */
  private async writeOutput (record: CascadeRecord, transform: Transform, input: KnowledgeDocument, content: string): Promise<KnowledgeDocument> {
    const existing = (await this.init.documents.children(input.id)).find(child => child.stage === transform.to && child.content === content)
    if (existing !== undefined) {
      return existing
    }
    return await writeStageOutput(this.init.documents, { title: record.title, fromStage: transform.from, parentId: input.id, content, project: record.project, runId: record.runId })
  }

  private async rootDocument (record: CascadeRecord): Promise<KnowledgeDocument> {
    if (record.rootDocumentId !== undefined) {
      return await this.requireDocument(record.rootDocumentId, record)
    }
    const document = await this.init.documents.insertDocument({ title: record.title, content: record.content, project: record.project, stage: record.startStage, tags: ['cascade'] })
    record.rootDocumentId = document.id
    await this.init.store.save(record)
    return document
  }

  private async requireDocument (id: number | undefined, record: CascadeRecord): Promise<KnowledgeDocument> {
    const document = id === undefined ? undefined : await this.init.documents.getDocument(id)
    if (document === undefined) {
      throw new CascadeRequestError(`document ${id ?? '(none)'} of cascade ${record.id} is not in ${this.init.documents.location}`)
    }
    return document
  }

  private forward (record: CascadeRecord, transform: Transform, event: DispatchEvent): void {
    const base = { cascadeId: record.id, from: transform.from, to: transform.to }
    switch (event.type) {
      case 'searching':
        this.emit({ ...base, type: 'stage_searching', attempt: event.attempt })
        break
      case 'dispatched':
        this.emit({ ...base, type: 'stage_dispatched', attempt: event.attempt, provider: event.provider, jobId: event.jobId })
        break
      case 'accepted':
        this.emit({ ...base, type: 'stage_running', provider: event.provider })
        break
      case 'progress':
        if (event.progress.lines.length > 0) {
          this.emit({ ...base, type: 'stage_progress', provider: event.provider, lines: event.progress.lines.map(line => line.line) })
        }
        break
      case 'retrying':
        this.emit({ ...base, type: 'stage_retrying', provider: event.provider, reason: event.reason, delayMs: event.delayMs })
        break
    }
  }

  private emit (event: DistributiveOmit<Parameters<CascadeEvents['emit']>[0], 'at'>): void {
    this.init.events.emit({ ...event, at: new Date().toISOString() } as Parameters<CascadeEvents['emit']>[0])
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never

/** Makes a title from the first line of the content, at most 80 characters. */
function titleFrom (content: string): string {
  const line = content.trim().split('\n')[0] ?? ''
  return line.length <= 80 ? line : `${line.slice(0, 77)}...`
}
