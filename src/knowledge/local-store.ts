import { z } from 'zod'
import { STAGES } from '../cascade/stages.js'
import { normalizeTags, searchWords } from './document-store.js'
import { KnowledgeBaseError } from './errors.js'
import type { TextSublevel } from '../node/data-dir.js'
import type { DocumentStore, KnowledgeDocument, NewDocument, StoreOptions } from './document-store.js'

/** The name of the sublevel of the node's database that contains the local store. */
export const LOCAL_STORE_SUBLEVEL = 'knowledge'

const DOCUMENT_PREFIX = 'doc:'
const CHILD_PREFIX = 'child:'
const NEXT_ID_KEY = 'meta:next-id'
/** Ids are zero-padded in keys so that LevelDB's byte order is numeric order. */
const ID_DIGITS = 12

const storedDocument = z.object({
  id: z.number().int().positive(),
  title: z.string(),
  content: z.string(),
  project: z.string().nullable(),
  parentId: z.number().int().positive().nullable(),
  stage: z.enum(STAGES).nullable(),
  tags: z.array(z.string()),
  createdAt: z.string()
})

/**
 * Cascade documents kept in the node's own LevelDB when the user has no
 * EMDX database. A sublevel of the node's one database gets atomic batches
 * (a document and its parent index are written together or not at all) and
 * needs no second file or lock. `emdx cascade show` reads it through the
 * node's API, because the running node holds the LevelDB lock.
 *
 * Search scans every document, which suits the few documents a user's
 * cascades produce. The local store keeps no cascade runs, because the
 * node's checkpoints record them.
 */
export class LocalDocumentStore implements DocumentStore {
  readonly kind = 'local'
  readonly location: string
  private readonly sublevel: TextSublevel
  /** The chain of inserts in this process; each waits for the one before, so no two read the same next id. */
  private insertQueue: Promise<unknown> = Promise.resolve()

  constructor (sublevel: TextSublevel, location = `sublevel ${LOCAL_STORE_SUBLEVEL} of the node's database`) {
    this.sublevel = sublevel
    this.location = location
  }

  async insertDocument (document: NewDocument, options: StoreOptions = {}): Promise<KnowledgeDocument> {
    const inserted = this.insertQueue.then(async () => await this.insertNow(document, options))
    this.insertQueue = inserted.catch(() => undefined)
    return await inserted
  }

  async getDocument (id: number): Promise<KnowledgeDocument | undefined> {
    const value = await this.sublevel.get(documentKey(id))
    return value === undefined ? undefined : this.parse(documentKey(id), value)
  }

  async children (parentId: number, options: StoreOptions = {}): Promise<KnowledgeDocument[]> {
    const prefix = `${CHILD_PREFIX}${padId(parentId)}:`
    const documents: KnowledgeDocument[] = []
    for await (const key of this.sublevel.keys({ gte: prefix, lt: `${prefix}\xff` })) {
      options.signal?.throwIfAborted()
      const child = await this.getDocument(Number.parseInt(key.slice(prefix.length), 10))
      if (child !== undefined) {
        documents.push(child)
      }
    }
    return documents
  }

  async search (query: string, options: StoreOptions & { limit?: number } = {}): Promise<KnowledgeDocument[]> {
    const words = searchWords(query)
    if (words.length === 0) {
      return []
    }

    const matches: Array<{ document: KnowledgeDocument, hits: number }> = []
    for await (const [key, value] of this.sublevel.iterator({ gte: DOCUMENT_PREFIX, lt: `${DOCUMENT_PREFIX}\xff` })) {
      options.signal?.throwIfAborted()
      const document = this.parse(key, value)
      const hits = countHits(document, words)
      if (hits > 0) {
        matches.push({ document, hits })
      }
    }

    matches.sort((a, b) => b.hits - a.hits || b.document.id - a.document.id)
    return matches.slice(0, options.limit ?? 20).map((match) => match.document)
  }

  async startRun (): Promise<undefined> {
    return undefined
  }

  async advanceRun (): Promise<void> {}

  async finishRun (): Promise<void> {}

  /** Does nothing: the sublevel belongs to the node's database, which the node closes. */
  async close (): Promise<void> {}

  private async insertNow (document: NewDocument, options: StoreOptions): Promise<KnowledgeDocument> {
    options.signal?.throwIfAborted()
    if (document.parentId !== undefined && await this.getDocument(document.parentId) === undefined) {
      throw new KnowledgeBaseError('ERR_DOCUMENT_NOT_FOUND', this.location, `parent document ${document.parentId} not found in the node's document store; pass the id of an existing document`)
    }

    const id = await this.nextId()
    const stored: KnowledgeDocument = {
      id,
      title: document.title,
      content: document.content,
      project: document.project ?? null,
      parentId: document.parentId ?? null,
      stage: document.stage ?? null,
      tags: normalizeTags(document.tags ?? []),
      createdAt: new Date().toISOString()
    }

    const batch = this.sublevel.batch()
      .put(documentKey(id), JSON.stringify(stored))
      .put(NEXT_ID_KEY, String(id + 1))
    if (stored.parentId !== null) {
      batch.put(`${CHILD_PREFIX}${padId(stored.parentId)}:${padId(id)}`, '')
    }
    await batch.write()
    return stored
  }

  private async nextId (): Promise<number> {
    const value = await this.sublevel.get(NEXT_ID_KEY)
    if (value === undefined) {
      return 1
    }
    const id = Number.parseInt(value, 10)
    if (!Number.isSafeInteger(id) || id < 1) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_INVALID', this.location, `the node's document store has an invalid next id ${JSON.stringify(value)}; restore the data directory from a backup`)
    }
    return id
  }

  private parse (key: string, value: string): KnowledgeDocument {
    let parsed: unknown
    try {
      parsed = JSON.parse(value)
    } catch (err) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_INVALID', this.location, `the node's document store has invalid JSON at ${key}; restore the data directory from a backup`, { cause: err })
    }
    const result = storedDocument.safeParse(parsed)
    if (!result.success) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_INVALID', this.location, `the node's document store has an invalid document at ${key} (${result.error.issues[0]?.message ?? 'unknown problem'}); restore the data directory from a backup`)
    }
    return result.data
  }
}

function padId (id: number): string {
  return String(id).padStart(ID_DIGITS, '0')
}

function documentKey (id: number): string {
  return `${DOCUMENT_PREFIX}${padId(id)}`
}

/** Counts the occurrences of the words in the title and content, or 0 when one word is missing. */
function countHits (document: KnowledgeDocument, words: string[]): number {
  const text = searchWords(`${document.title} ${document.content}`)
  let total = 0
  for (const word of words) {
    const hits = text.filter((candidate) => candidate === word).length
    if (hits === 0) {
      return 0
    }
    total += hits
  }
  return total
}
