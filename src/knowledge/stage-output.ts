import { documentTitle, next } from '../cascade/stages.js'
import type { Stage } from '../cascade/stages.js'
import type { DocumentStore, KnowledgeDocument, StoreOptions } from './document-store.js'

/** The tags every document a remote stage produced carries. */
export const STAGE_OUTPUT_TAGS = ['cascade', 'remote'] as const

export interface StageOutput {
  /** The cascade's title, without the `[stage→next]` suffix. */
  title: string
  /** The stage of the transform's input document. */
  fromStage: Stage
  /** The input document; the output becomes its child. */
  parentId: number
  content: string
  project?: string
  /** The run from DocumentStore.startRun, moved on to the new document when given. */
  runId?: number
}

/**
 * Stores a transform's output as a child of its input document, titled
 * `"{title} [{stage}→{next}]"`, at the next stage, tagged `cascade` and
 * `remote`, and moves the cascade run on to it.
 */
export async function writeStageOutput (store: DocumentStore, output: StageOutput, options: StoreOptions = {}): Promise<KnowledgeDocument> {
  const stage = next(output.fromStage) as Stage
  const document = await store.insertDocument({
    title: documentTitle(output.title, output.fromStage),
    content: output.content,
    project: output.project,
    parentId: output.parentId,
    stage,
    tags: [...STAGE_OUTPUT_TAGS]
  }, options)

  if (output.runId !== undefined) {
    await store.advanceRun(output.runId, document.id, stage, options)
  }
  return document
}
