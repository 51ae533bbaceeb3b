import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url))

/** The EMDX schemas in test/fixtures; each file's header names its source. */
export const EMDX_SCHEMAS = {
  /** The older schema with cascade_runs and document_cascade_metadata. */
  cascadeRuns: 'emdx-schema-cascade-runs.sql',
  /** A current schema with documents.doc_type. */
  docType: 'emdx-schema-doc-type.sql'
} as const

export type EmdxSchemaName = keyof typeof EMDX_SCHEMAS

/** Creates an SQLite file in `dir` with one of the EMDX schemas and returns its path. */
export function createEmdxDatabase (dir: string, schema: EmdxSchemaName, name = 'knowledge.db'): string {
  const file = path.join(dir, name)
  const db = new Database(file)
  try {
    db.exec(readFileSync(path.join(fixtures, EMDX_SCHEMAS[schema]), 'utf8'))
  } finally {
    db.close()
  }
  return file
}
