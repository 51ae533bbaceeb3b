import { parseStage } from '../cascade/stages.js'
import { WorkspaceError } from './errors.js'
import type { Stage } from '../cascade/stages.js'

/** A document id usable in a branch name: a positive integer, or letters, digits, `_` and `-`. */
const DOCUMENT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

/** Returns the branch of one stage execution, `cascade/{docId}/{stage}`, after checking both parts. */
export function cascadeBranch (docId: number | string, stage: Stage): string {
  const id = String(docId)
  const isPositiveInteger = typeof docId === 'number' ? Number.isSafeInteger(docId) && docId > 0 : true
  if (!isPositiveInteger || !DOCUMENT_ID.test(id)) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', id, `invalid document id ${JSON.stringify(id)} for a cascade branch; use a positive integer, or letters, digits, _ and -`)
  }
  return `cascade/${id}/${parseStage(stage)}`
}
