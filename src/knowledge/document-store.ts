import type { Stage } from '../cascade/stages.js'

/** A document as both stores return it. */
export interface KnowledgeDocument {
  id: number
  title: string
  content: string
  project: string | null
  parentId: number | null
  stage: Stage | null
  /** Lower-case tag names, sorted. */
  tags: string[]
  /** ISO 8601 in UTC for the local store; SQLite's `CURRENT_TIMESTAMP` text for an EMDX file. */
  createdAt: string
}

export interface NewDocument {
  title: string
  content: string
  project?: string
  parentId?: number
  stage?: Stage
  /** Tag names; stored in lower case, without duplicates. */
  tags?: string[]
}

export type CascadeRunStatus = 'running' | 'completed' | 'failed' | 'paused'

export interface NewCascadeRun {
  /** The document the cascade started from. */
  startDocId: number
  startStage: Stage
  stopStage: Stage
}

export interface StoreOptions {
  signal?: AbortSignal
}

/**
 * The destination of a cascade's documents: the user's EMDX SQLite file, or
 * the node's own store when there is none. `emdx cascade show` reads either
 * through this interface.
 */
export interface DocumentStore {
  readonly kind: 'emdx' | 'local'
  /** The SQLite file, or a description of the node's store, for messages. */
  readonly location: string

  insertDocument: (document: NewDocument, options?: StoreOptions) => Promise<KnowledgeDocument>
  getDocument: (id: number, options?: StoreOptions) => Promise<KnowledgeDocument | undefined>
  /** Returns the documents whose parent is `parentId`, oldest first. */
  children: (parentId: number, options?: StoreOptions) => Promise<KnowledgeDocument[]>
  /** Returns the documents that contain every word of `query`, best match first. */
  search: (query: string, options?: StoreOptions & { limit?: number }) => Promise<KnowledgeDocument[]>

  /**
   * Records the start of a cascade and returns its run id, or undefined
   * when this store keeps no runs (an EMDX file without `cascade_runs`, or
   * the local store, whose cascades the node's checkpoints track).
   */
  startRun: (run: NewCascadeRun, options?: StoreOptions) => Promise<number | undefined>
  /** Moves a run to the document and stage the cascade has reached. */
  advanceRun: (runId: number, currentDocId: number, currentStage: Stage, options?: StoreOptions) => Promise<void>
  finishRun: (runId: number, status: Exclude<CascadeRunStatus, 'running'>, errorMessage?: string, options?: StoreOptions) => Promise<void>

  close: () => Promise<void>
}

/** Returns the tag names in lower case, trimmed, without empty names or duplicates, sorted. */
export function normalizeTags (tags: readonly string[]): string[] {
  const names = new Set<string>()
  for (const tag of tags) {
    const name = tag.trim().toLowerCase()
    if (name !== '') {
      names.add(name)
    }
  }
  return [...names].sort()
}

/** Splits a search query into lower-case words; punctuation separates words. */
export function searchWords (query: string): string[] {
  return query.toLowerCase().split(/[^\p{L}\p{N}_]+/u).filter((word) => word !== '')
}
