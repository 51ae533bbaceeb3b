import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { isStage } from '../cascade/stages.js'
import { silentLogger } from '../node/logger.js'
import { normalizeTags, searchWords } from './document-store.js'
import { inspectSchema } from './emdx-schema.js'
import { KnowledgeBaseError } from './errors.js'
import type { Stage } from '../cascade/stages.js'
import type { Logger } from '../node/logger.js'
import type { CascadeRunStatus, DocumentStore, KnowledgeDocument, NewCascadeRun, NewDocument, StoreOptions } from './document-store.js'
import type { EmdxSchema } from './emdx-schema.js'

/** How long a write waits for another process's lock before it fails, in ms. */
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000

/**
 * SQLite's own busy wait per attempt, in ms. better-sqlite3 waits
 * synchronously, which blocks the event loop, so each attempt waits only
 * briefly and the rest of the busy timeout is spent in async sleeps.
 */
const SQLITE_BUSY_WAIT_MS = 20
const BUSY_POLL_MS = 50

export interface EmdxStoreOptions {
  busyTimeoutMs?: number
  logger?: Logger
}

interface DocumentRow {
  id: number
  title: string
  content: string
  project: string | null
  parent_id: number | null
  stage: string | null
  created_at: string
}

/**
 * Cascade documents in the user's EMDX SQLite file. Statements adapt to the
 * schema found by `PRAGMA table_info`: `doc_type` and `stage` are written
 * when those columns exist, `cascade_runs` and `document_cascade_metadata`
 * when those tables exist. The FTS table is never written, because EMDX's
 * triggers index every inserted document.
 */
export class EmdxStore implements DocumentStore {
  readonly kind = 'emdx'
  readonly location: string
  readonly schema: EmdxSchema
  private readonly db: Database.Database
  private readonly busyTimeoutMs: number
  private readonly selectColumns: string

  private constructor (file: string, db: Database.Database, schema: EmdxSchema, busyTimeoutMs: number) {
    this.location = file
    this.db = db
    this.schema = schema
    this.busyTimeoutMs = busyTimeoutMs
    this.selectColumns = documentSelectColumns(schema)
  }

  /**
   * Opens an existing EMDX database and checks its schema. Raises a
   * KnowledgeBaseError when the file is missing, not SQLite, read-only,
   * locked for longer than the busy timeout, or lacks the tables EMDX has.
   */
  static async open (file: string, options: EmdxStoreOptions = {}): Promise<EmdxStore> {
    const logger = (options.logger ?? silentLogger()).child({ component: 'knowledge' })
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS
    await checkFile(file)

    let db: Database.Database
    try {
      db = new Database(file, { fileMustExist: true, timeout: SQLITE_BUSY_WAIT_MS })
    } catch (err) {
      throw translateSqliteError(err, file, busyTimeoutMs)
    }

    try {
      const schema = await retryWhileBusy(() => {
        db.pragma('foreign_keys = ON')
        return inspectSchema(db, file)
      }, file, busyTimeoutMs)
      warnAboutSchema(logger, file, schema)
      return new EmdxStore(file, db, schema, busyTimeoutMs)
    } catch (err) {
      db.close()
      throw err
    }
  }

  async insertDocument (document: NewDocument, options: StoreOptions = {}): Promise<KnowledgeDocument> {
    const insert = this.db.transaction(() => {
      if (document.parentId !== undefined) {
        this.requireDocument(document.parentId, 'parent document')
      }
      const id = this.insertDocumentRow(document)
      this.insertTags(id, normalizeTags(document.tags ?? []))
      if (this.schema.hasCascadeMetadata && document.stage !== undefined) {
        this.db.prepare('INSERT INTO document_cascade_metadata (document_id, stage) VALUES (?, ?)').run(id, document.stage)
      }
      return id
    })

    // IMMEDIATE takes the write lock at BEGIN, so a busy database fails
    // before any statement ran and the whole transaction can be retried.
    const id = await retryWhileBusy(() => insert.immediate(), this.location, this.busyTimeoutMs, options.signal)
    return await this.getDocument(id, options) as KnowledgeDocument
  }

  async getDocument (id: number, options: StoreOptions = {}): Promise<KnowledgeDocument | undefined> {
    return await retryWhileBusy(() => {
      const row = this.db.prepare(`${this.selectColumns} WHERE d.id = ?`).get(id) as DocumentRow | undefined
      return row === undefined ? undefined : this.toDocument(row)
    }, this.location, this.busyTimeoutMs, options.signal)
  }

  async children (parentId: number, options: StoreOptions = {}): Promise<KnowledgeDocument[]> {
    return await retryWhileBusy(() => {
      const rows = this.db.prepare(`${this.selectColumns} WHERE d.parent_id = ? ${this.notDeleted()} ORDER BY d.id`).all(parentId) as DocumentRow[]
      return rows.map((row) => this.toDocument(row))
    }, this.location, this.busyTimeoutMs, options.signal)
  }

  async search (query: string, options: StoreOptions & { limit?: number } = {}): Promise<KnowledgeDocument[]> {
    const words = searchWords(query)
    if (words.length === 0) {
      return []
    }
    const limit = options.limit ?? 20

    return await retryWhileBusy(() => {
      const rows = this.schema.hasFts ? this.searchFts(words, limit) : this.searchLike(words, limit)
      return rows.map((row) => this.toDocument(row))
    }, this.location, this.busyTimeoutMs, options.signal)
  }

  // NOTE: EMDX links its own stage runs to a cascade run through
  // executions.cascade_run_id; remote stages add no executions rows, so EMDX
  // shows these runs without executions.
  async startRun (run: NewCascadeRun, options: StoreOptions = {}): Promise<number | undefined> {
    if (!this.schema.hasCascadeRuns) {
      return undefined
    }
    const statement = this.db.prepare(`INSERT INTO cascade_runs (start_doc_id, current_doc_id, start_stage, stop_stage, current_stage, status)
      VALUES (?, ?, ?, ?, ?, 'running')`)
    const info = await retryWhileBusy(() => statement.run(run.startDocId, run.startDocId, run.startStage, run.stopStage, run.startStage), this.location, this.busyTimeoutMs, options.signal)
    return Number(info.lastInsertRowid)
  }

  async advanceRun (runId: number, currentDocId: number, currentStage: Stage, options: StoreOptions = {}): Promise<void> {
    if (!this.schema.hasCascadeRuns) {
      return
    }
    const statement = this.db.prepare('UPDATE cascade_runs SET current_doc_id = ?, current_stage = ? WHERE id = ?')
    await retryWhileBusy(() => statement.run(currentDocId, currentStage, runId), this.location, this.busyTimeoutMs, options.signal)
  }

  async finishRun (runId: number, status: Exclude<CascadeRunStatus, 'running'>, errorMessage?: string, options: StoreOptions = {}): Promise<void> {
    if (!this.schema.hasCascadeRuns) {
      return
    }
    const statement = this.db.prepare('UPDATE cascade_runs SET status = ?, completed_at = CURRENT_TIMESTAMP, error_message = ? WHERE id = ?')
    await retryWhileBusy(() => statement.run(status, errorMessage ?? null, runId), this.location, this.busyTimeoutMs, options.signal)
  }

  async close (): Promise<void> {
    this.db.close()
  }

  private insertDocumentRow (document: NewDocument): number {
    const values: Record<string, string | number | null> = {
      title: document.title,
      content: document.content,
      project: document.project ?? null,
      parent_id: document.parentId ?? null
    }
    if (this.schema.hasStageColumn) {
      values.stage = document.stage ?? null
    }
    if (this.schema.hasDocType) {
      values.doc_type = 'user'
    }

    const columns = Object.keys(values)
    const sql = `INSERT INTO documents (${columns.join(', ')}) VALUES (${columns.map((column) => `@${column}`).join(', ')})`
    const info = this.db.prepare(sql).run(values)
    return Number(info.lastInsertRowid)
  }

  /** Links each tag to the document, creating missing tags, and counts each new link in `usage_count`. */
  private insertTags (documentId: number, names: string[]): void {
    const createTag = this.db.prepare('INSERT OR IGNORE INTO tags (name, usage_count) VALUES (?, 0)')
    const findTag = this.db.prepare('SELECT id FROM tags WHERE name = ?')
    const link = this.db.prepare('INSERT OR IGNORE INTO document_tags (document_id, tag_id) VALUES (?, ?)')
    const count = this.db.prepare('UPDATE tags SET usage_count = COALESCE(usage_count, 0) + 1 WHERE id = ?')

    for (const name of names) {
      createTag.run(name)
      const tag = findTag.get(name) as { id: number }
      if (link.run(documentId, tag.id).changes === 1) {
        count.run(tag.id)
      }
    }
  }

  private requireDocument (id: number, role: string): void {
    const row = this.db.prepare('SELECT id FROM documents WHERE id = ?').get(id)
    if (row === undefined) {
      throw new KnowledgeBaseError('ERR_DOCUMENT_NOT_FOUND', this.location, `${role} ${id} not found in EMDX database ${this.location}; pass the id of an existing document`)
    }
  }

  private searchFts (words: string[], limit: number): DocumentRow[] {
    // Each word is quoted, so FTS5 treats none of them as query syntax;
    // searchWords keeps only letters, digits and underscores.
    const match = words.map((word) => `"${word}"`).join(' ')
    const sql = `${this.selectColumns} JOIN documents_fts ON documents_fts.rowid = d.id
      WHERE documents_fts MATCH ? ${this.notDeleted()} ORDER BY documents_fts.rank LIMIT ?`
    return this.db.prepare(sql).all(match, limit) as DocumentRow[]
  }

  private searchLike (words: string[], limit: number): DocumentRow[] {
    const conditions = words.map(() => "(lower(d.title) LIKE ? ESCAPE '\\' OR lower(d.content) LIKE ? ESCAPE '\\')")
    const patterns = words.flatMap((word) => {
      const pattern = `%${word.replaceAll('\\', '\\\\').replaceAll('%', '\\%').replaceAll('_', '\\_')}%`
      return [pattern, pattern]
    })
    const sql = `${this.selectColumns} WHERE ${conditions.join(' AND ')} ${this.notDeleted()} ORDER BY d.id DESC LIMIT ?`
    return this.db.prepare(sql).all(...patterns, limit) as DocumentRow[]
  }

  private notDeleted (): string {
    return this.schema.hasIsDeleted ? 'AND COALESCE(d.is_deleted, 0) = 0' : ''
  }

  private toDocument (row: DocumentRow): KnowledgeDocument {
    const tags = this.db.prepare('SELECT t.name FROM tags t JOIN document_tags dt ON dt.tag_id = t.id WHERE dt.document_id = ? ORDER BY t.name').all(row.id) as Array<{ name: string }>
    return {
      id: row.id,
      title: row.title,
      content: row.content,
      project: row.project,
      parentId: row.parent_id,
      stage: isStage(row.stage) ? row.stage : null,
      tags: tags.map((tag) => tag.name),
      createdAt: row.created_at
    }
  }
}

function documentSelectColumns (schema: EmdxSchema): string {
  let stage = 'NULL'
  if (schema.hasStageColumn && schema.hasCascadeMetadata) {
    stage = 'COALESCE(m.stage, d.stage)'
  } else if (schema.hasStageColumn) {
    stage = 'd.stage'
  } else if (schema.hasCascadeMetadata) {
    stage = 'm.stage'
  }
  const join = schema.hasCascadeMetadata ? ' LEFT JOIN document_cascade_metadata m ON m.document_id = d.id' : ''
  return `SELECT d.id, d.title, d.content, d.project, d.parent_id, ${stage} AS stage, d.created_at FROM documents d${join}`
}

async function checkFile (file: string): Promise<void> {
  try {
    const info = await stat(file)
    if (!info.isFile()) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_INVALID', file, `EMDX database ${file} is not a file; set EMDX_DB to the knowledge.db file of EMDX`)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_NOT_FOUND', file, `EMDX database ${file} does not exist; run emdx once to create it, or unset EMDX_DB to keep cascade documents in the node's own store`, { cause: err })
    }
    throw err
  }

  // SQLite writes a journal or WAL file beside the database, so the folder
  // must be writable too.
  const folder = path.dirname(file)
  for (const [target, mode] of [[file, constants.R_OK | constants.W_OK], [folder, constants.W_OK | constants.X_OK]] as const) {
    try {
      await access(target, mode)
    } catch (err) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_READ_ONLY', file, `EMDX database ${file} is read-only for this user (${target} is not writable); make the file and its folder ${folder} writable, or unset EMDX_DB to keep cascade documents in the node's own store`, { cause: err })
    }
  }
}

/**
 * Runs `operation`, retrying while SQLite reports the database busy or
 * locked, until `busyTimeoutMs` has passed. Other SQLite errors are
 * translated into KnowledgeBaseErrors that name the file.
 */
async function retryWhileBusy<T> (operation: () => T, file: string, busyTimeoutMs: number, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + busyTimeoutMs
  for (;;) {
    signal?.throwIfAborted()
    try {
      return operation()
    } catch (err) {
      if (!isBusy(err) || Date.now() >= deadline) {
        throw translateSqliteError(err, file, busyTimeoutMs)
      }
    }
    await sleep(BUSY_POLL_MS, undefined, { signal })
  }
}

function isBusy (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || (typeof code === 'string' && code.startsWith('SQLITE_BUSY_'))
}

function translateSqliteError (err: unknown, file: string, busyTimeoutMs: number): unknown {
  if (!(err instanceof Database.SqliteError)) {
    return err
  }
  if (isBusy(err)) {
    return new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_BUSY', file, `EMDX database ${file} stayed locked by another process for ${busyTimeoutMs} ms; close the program that is writing to it (emdx, its TUI) and retry`, { cause: err })
  }
  if (err.code.startsWith('SQLITE_READONLY')) {
    return new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_READ_ONLY', file, `EMDX database ${file} is read-only (${err.message}); make the file and its folder writable, or unset EMDX_DB`, { cause: err })
  }
  if (err.code === 'SQLITE_NOTADB' || err.code === 'SQLITE_CORRUPT') {
    return new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_INVALID', file, `${file} is not a usable SQLite database (${err.message}); set EMDX_DB to the knowledge.db file of EMDX`, { cause: err })
  }
  return err
}

function warnAboutSchema (logger: Logger, file: string, schema: EmdxSchema): void {
  if (schema.hasFts && !schema.hasFtsInsertTrigger) {
    logger.warn({ file }, 'EMDX database has documents_fts but no insert trigger on documents, so cascade documents will not appear in its full-text search')
  }
  for (const table of schema.skippedTables) {
    logger.warn({ file, table }, 'EMDX table lacks columns emdx-node writes; skipping it')
  }
}
