import { EmdxError } from '../node/errors.js'

export type WebhookErrorCode =
  /** The callback URL is not an absolute http or https URL without credentials. */
  | 'ERR_WEBHOOK_URL'
  /** The queue already contains the maximum number of events. */
  | 'ERR_WEBHOOK_QUEUE_FULL'
  /** The secret is missing, too short, or its key file is unreadable or readable by others. */
  | 'ERR_WEBHOOK_SECRET'
  /** The dispatcher was stopped. */
  | 'ERR_WEBHOOK_STOPPED'

/** A webhook that cannot be set up or queued. Delivery failures are logged and reported, not thrown. */
export class WebhookError extends EmdxError {
  constructor (code: WebhookErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options)
  }
}
