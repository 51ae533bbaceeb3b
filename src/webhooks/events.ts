import type { Stage } from '../cascade/stages.js'

export type WebhookEventType = 'stage_completed' | 'cascade_completed' | 'cascade_failed'

/** The data of a `stage_completed` event: one transform finished and its document was stored. */
export interface StageCompletedData {
  /** The stage of the transform's input document. */
  stage: Stage
  next_stage: Stage
  /** The id of the output document. */
  document_id: number
  /** The peer id of the provider that ran the stage. */
  provider?: string
  elapsed_ms?: number
  /** The cascade branch, for a cascade with a repository. */
  branch?: string
}

/** The data of a `cascade_completed` event. */
export interface CascadeCompletedData {
  final_stage: Stage
  /** The ids of the documents the cascade produced, in stage order. */
  document_ids: number[]
}

/** The data of a `cascade_failed` event. */
export interface CascadeFailedData {
  /** The stage of the input document of the transform that failed. */
  stage: Stage
  error: string
}

export interface WebhookEventData {
  stage_completed: StageCompletedData
  cascade_completed: CascadeCompletedData
  cascade_failed: CascadeFailedData
}

/** The JSON body of a webhook request. */
export interface WebhookEvent<T extends WebhookEventType = WebhookEventType> {
  /** A UUID, also sent as `X-Emdx-Delivery`. */
  id: string
  type: T
  cascade_id: string
  /** 1 for a cascade's first event, then one more for each event; a gap means an event was given up. */
  sequence: number
  /** ISO 8601 time in UTC when the event was queued. */
  created_at: string
  data: WebhookEventData[T]
}
