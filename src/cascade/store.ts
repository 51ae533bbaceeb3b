import { z } from 'zod'
import { textSublevel } from '../node/data-dir.js'
import { EmdxError } from '../node/errors.js'
import { STAGES } from './stages.js'
import type { RootDatabase, TextSublevel } from '../node/data-dir.js'

/** A cascade record in the store is unreadable; the message names it and the database. */
export class CascadeStoreError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_CASCADE_STORE', message, options)
  }
}

const stageSchema = z.enum(STAGES)

/**
 * The states of one transform. Every change is written before the node acts
 * on it, so a restarted node knows exactly where each cascade stood:
 * `dispatched` (an offer may be out), `result-received` (the result and the
 * executor's receipt are here, not yet countersigned), `completed` (the
 * output document exists), `failed` (no provider could run it).
 */
export const transformStateSchema = z.enum(['pending', 'dispatched', 'result-received', 'completed', 'failed', 'cancelled'])
export type TransformState = z.infer<typeof transformStateSchema>

const attemptSchema = z.object({
  jobId: z.string(),
  provider: z.string().optional(),
  startedAt: z.string(),
  error: z.string().optional()
})

export const transformSchema = z.object({
  from: stageSchema,
  to: stageSchema,
  state: transformStateSchema,
  attempts: z.array(attemptSchema),
  provider: z.string().optional(),
  jobId: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  /** Id of the document this transform wrote, in the knowledge base or the node's own store. */
  outputDocumentId: z.number().int().optional(),
  /** Branch the transform's commit is on, for stages run on a repository. */
  branch: z.string().optional(),
  credits: z.number().optional(),
  error: z.string().optional(),
  /** Base64 of the checkpointed result and receipt, kept only in `result-received`. */
  pendingResult: z.string().optional(),
  /** Commit of the base branch the stage's repository bundle was made from. */
  baseCommit: z.string().optional()
})
export type Transform = z.infer<typeof transformSchema>

export const cascadeStatusSchema = z.enum(['running', 'completed', 'failed', 'cancelled'])
export type CascadeStatus = z.infer<typeof cascadeStatusSchema>

export const cascadeRecordSchema = z.object({
  id: z.string(),
  title: z.string(),
  content: z.string(),
  project: z.string().optional(),
  startStage: stageSchema,
  stopStage: stageSchema,
  remote: z.boolean(),
  repo: z.string().optional(),
  model: z.string().optional(),
  timeoutMs: z.number(),
  cpus: z.number(),
  memoryBytes: z.number(),
  maxCredits: z.number(),
  callbackUrl: z.string().optional(),
  status: cascadeStatusSchema,
  /** Id of the input document of the first transform. */
  rootDocumentId: z.number().int().optional(),
  /** Id of the run in the EMDX database's `cascade_runs`, when it has that table. */
  runId: z.number().int().optional(),
  transforms: z.array(transformSchema),
  createdAt: z.string(),
  updatedAt: z.string(),
  error: z.string().optional()
})
export type CascadeRecord = z.infer<typeof cascadeRecordSchema>

/**
 * Cascades and their checkpoints in the node's database. Each save replaces
 * the whole record in one put, so a crash leaves either the old or the new
 * checkpoint, never a mix.
 */
export class CascadeStore {
  private readonly store: TextSublevel

  constructor (database: RootDatabase) {
    this.store = textSublevel(database, 'cascades')
  }

  async save (record: CascadeRecord): Promise<void> {
    record.updatedAt = new Date().toISOString()
    await this.store.put(record.id, JSON.stringify(record))
  }

  async get (id: string): Promise<CascadeRecord | undefined> {
    const text = await this.store.get(id)
    return text === undefined ? undefined : this.parse(id, text)
  }

  /** All cascades, newest first. */
  async list (): Promise<CascadeRecord[]> {
    const records: CascadeRecord[] = []
    for await (const [id, text] of this.store.iterator()) {
      records.push(this.parse(id, text))
    }
    return records.sort((a, b) => b.createdAt.localeCompare(a.createdAt))
  }

  async unfinished (): Promise<CascadeRecord[]> {
    return (await this.list()).filter(record => record.status === 'running')
  }

  private parse (id: string, text: string): CascadeRecord {
    try {
      return cascadeRecordSchema.parse(JSON.parse(text))
    } catch (err) {
      throw new CascadeStoreError(`cascade ${id} in the node's database is unreadable (${(err as Error).message}); restore the data directory from a backup`, { cause: err })
    }
  }
}
