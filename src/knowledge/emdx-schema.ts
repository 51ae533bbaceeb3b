import { KnowledgeBaseError } from './errors.js'
import type BetterSqlite3 from 'better-sqlite3'

/** One row of `PRAGMA table_info`. */
interface ColumnInfo {
  name: string
  notnull: number
  dflt_value: string | null
  pk: number
}

/** The parts of an EMDX database's schema that emdx-node adapts its statements to. */
export interface EmdxSchema {
  /** Columns of `documents`, by name. */
  documentColumns: Set<string>
  /** `documents.doc_type` of current EMDX versions; written as 'user'. */
  hasDocType: boolean
  /** `documents.stage`, added by EMDX's cascade migration. */
  hasStageColumn: boolean
  hasIsDeleted: boolean
  /** The FTS5 table `documents_fts`, which EMDX's own triggers fill. */
  hasFts: boolean
  /** An AFTER INSERT trigger on `documents` that writes `documents_fts`. */
  hasFtsInsertTrigger: boolean
  hasCascadeRuns: boolean
  hasCascadeMetadata: boolean
  /** Optional tables that exist but lack columns emdx-node writes, so they are skipped. */
  skippedTables: string[]
}

/** Columns emdx-node writes into `documents`; any other NOT NULL column needs a default. */
const WRITTEN_DOCUMENT_COLUMNS = new Set(['title', 'content', 'project', 'parent_id', 'stage', 'doc_type'])

const REQUIRED_COLUMNS: Record<string, string[]> = {
  documents: ['id', 'title', 'content', 'project', 'parent_id'],
  tags: ['id', 'name', 'usage_count'],
  document_tags: ['document_id', 'tag_id']
}

const CASCADE_RUNS_COLUMNS = ['id', 'start_doc_id', 'current_doc_id', 'start_stage', 'stop_stage', 'current_stage', 'status', 'completed_at', 'error_message']
const CASCADE_METADATA_COLUMNS = ['document_id', 'stage']

/**
 * Reads the schema of an EMDX database with `PRAGMA table_info` and checks
 * that emdx-node can write documents and tags into it. Missing required
 * tables or columns, and NOT NULL columns without a default that
 * emdx-node does not write, raise a KnowledgeBaseError naming the file.
 */
export function inspectSchema (db: BetterSqlite3.Database, file: string): EmdxSchema {
  const tables = new Set(
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((row) => row.name)
  )

  for (const [table, columns] of Object.entries(REQUIRED_COLUMNS)) {
    requireColumns(db, file, tables, table, columns)
  }

  const documentColumns = readColumns(db, 'documents')
  checkUnwrittenNotNull(file, documentColumns)

  const skippedTables: string[] = []
  const hasCascadeRuns = optionalTable(db, tables, 'cascade_runs', CASCADE_RUNS_COLUMNS, skippedTables)
  const hasCascadeMetadata = optionalTable(db, tables, 'document_cascade_metadata', CASCADE_METADATA_COLUMNS, skippedTables)
  const names = new Set(documentColumns.map((column) => column.name))

  return {
    documentColumns: names,
    hasDocType: names.has('doc_type'),
    hasStageColumn: names.has('stage'),
    hasIsDeleted: names.has('is_deleted'),
    hasFts: tables.has('documents_fts'),
    hasFtsInsertTrigger: hasFtsInsertTrigger(db),
    hasCascadeRuns,
    hasCascadeMetadata,
    skippedTables
  }
}

function readColumns (db: BetterSqlite3.Database, table: string): ColumnInfo[] {
  // PRAGMA arguments cannot be bound; `table` is one of this file's constant names.
  return db.prepare(`PRAGMA table_info(${table})`).all() as ColumnInfo[]
}

function requireColumns (db: BetterSqlite3.Database, file: string, tables: Set<string>, table: string, columns: string[]): void {
  if (!tables.has(table)) {
    throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_SCHEMA', file, `EMDX database ${file} has no table ${table}, so it is not an EMDX knowledge base or its schema is too old; run emdx once to upgrade it, or set EMDX_DB to the right file`)
  }

  const present = new Set(readColumns(db, table).map((column) => column.name))
  const missing = columns.filter((column) => !present.has(column))
  if (missing.length > 0) {
    throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_SCHEMA', file, `EMDX database ${file} has no column ${missing.map((column) => `${table}.${column}`).join(', ')}; run emdx once to upgrade its schema`)
  }
}

function checkUnwrittenNotNull (file: string, columns: ColumnInfo[]): void {
  for (const column of columns) {
    const needsValue = column.notnull === 1 && column.dflt_value === null && column.pk === 0
    if (needsValue && !WRITTEN_DOCUMENT_COLUMNS.has(column.name)) {
      throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_SCHEMA', file, `EMDX database ${file} requires a value for documents.${column.name}, which this version of emdx-node does not know how to fill; upgrade emdx-node, or unset EMDX_DB to keep cascade documents in the node's own store`)
    }
  }
}

function optionalTable (db: BetterSqlite3.Database, tables: Set<string>, table: string, columns: string[], skipped: string[]): boolean {
  if (!tables.has(table)) {
    return false
  }
  const present = new Set(readColumns(db, table).map((column) => column.name))
  if (columns.every((column) => present.has(column))) {
    return true
  }
  skipped.push(table)
  return false
}

function hasFtsInsertTrigger (db: BetterSqlite3.Database): boolean {
  const triggers = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'documents'").all() as Array<{ sql: string | null }>
  return triggers.some((trigger) => {
    const sql = (trigger.sql ?? '').toLowerCase()
    return /after\s+insert/.test(sql) && sql.includes('documents_fts')
  })
}
