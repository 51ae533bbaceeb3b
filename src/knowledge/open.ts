import { stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { textSublevel } from '../node/data-dir.js'
import { EmdxStore } from './emdx-store.js'
import { KnowledgeBaseError } from './errors.js'
import { LOCAL_STORE_SUBLEVEL, LocalDocumentStore } from './local-store.js'
import type { RootDatabase } from '../node/data-dir.js'
import type { Logger } from '../node/logger.js'
import type { DocumentStore } from './document-store.js'

export interface KnowledgeBaseOptions {
  /** Environment to read EMDX_DB from; process.env by default. */
  env?: NodeJS.ProcessEnv
  /** Home folder for the default path; os.homedir() by default. */
  homeDir?: string
  /** The node's database, for the local store when there is no EMDX file. */
  database?: RootDatabase
  busyTimeoutMs?: number
  logger?: Logger
}

/** Returns the EMDX database path: EMDX_DB when set, else ~/.config/emdx/knowledge.db. */
export function emdxDatabasePath (env: NodeJS.ProcessEnv = process.env, homeDir = os.homedir()): { file: string, fromEnv: boolean } {
  const configured = env.EMDX_DB
  if (configured !== undefined && configured !== '') {
    return { file: path.resolve(configured), fromEnv: true }
  }
  return { file: path.join(homeDir, '.config', 'emdx', 'knowledge.db'), fromEnv: false }
}

/**
 * Opens where cascade documents go. The EMDX database is used when it
 * exists; without one at the default path the node's own store is used.
 * An EMDX_DB that names a missing file is an error rather than a silent
 * fallback, because the user chose that file.
 */
export async function openKnowledgeBase (options: KnowledgeBaseOptions = {}): Promise<DocumentStore> {
  const { file, fromEnv } = emdxDatabasePath(options.env, options.homeDir)

  if (fromEnv || await exists(file)) {
    return await EmdxStore.open(file, { busyTimeoutMs: options.busyTimeoutMs, logger: options.logger })
  }

  if (options.database === undefined) {
    throw new KnowledgeBaseError('ERR_KNOWLEDGE_BASE_NOT_FOUND', file, `no EMDX database at ${file} and no node database for the local store; set EMDX_DB to an EMDX knowledge.db, or run this inside a node`)
  }
  options.logger?.child({ component: 'knowledge' }).info({ file }, 'no EMDX database; keeping cascade documents in the node store')
  return new LocalDocumentStore(textSublevel(options.database, LOCAL_STORE_SUBLEVEL))
}

async function exists (file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return false
    }
    throw err
  }
}
