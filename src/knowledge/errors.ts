import { EmdxError } from '../node/errors.js'

/**
 * The knowledge base cannot be used as it is. `file` is the SQLite file or
 * store that failed, and `code` identifies the cause.
 */
export class KnowledgeBaseError extends EmdxError {
  readonly file: string

  constructor (code: KnowledgeBaseErrorCode, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.file = file
  }
}

export type KnowledgeBaseErrorCode =
  /** EMDX_DB names a file that does not exist. */
  | 'ERR_KNOWLEDGE_BASE_NOT_FOUND'
  /** The file is not an SQLite database. */
  | 'ERR_KNOWLEDGE_BASE_INVALID'
  /** A table or column that emdx-node needs is missing, or a column needs a value emdx-node cannot give. */
  | 'ERR_KNOWLEDGE_BASE_SCHEMA'
  /** The file or its folder is not writable. */
  | 'ERR_KNOWLEDGE_BASE_READ_ONLY'
  /** Another process held the write lock for longer than the busy timeout. */
  | 'ERR_KNOWLEDGE_BASE_BUSY'
  /** A document that an operation refers to does not exist. */
  | 'ERR_DOCUMENT_NOT_FOUND'
