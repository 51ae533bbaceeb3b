import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Headers of every webhook request:
 * - `X-Emdx-Event`: the event type, such as `stage_completed`.
 * - `X-Emdx-Delivery`: the event id; the same on every retry, so a receiver can drop repeats.
 * - `X-Emdx-Timestamp`: when this attempt was signed, in whole seconds since the Unix epoch.
 * - `X-Emdx-Signature`: `v1=` and the lower-case hex HMAC-SHA256 of the signed string.
 */
export const EVENT_HEADER = 'x-emdx-event'
export const DELIVERY_HEADER = 'x-emdx-delivery'
export const TIMESTAMP_HEADER = 'x-emdx-timestamp'
export const SIGNATURE_HEADER = 'x-emdx-signature'

export const SIGNATURE_VERSION = 'v1'

/** How far a timestamp may be from the receiver's clock before verifyWebhook rejects it, in seconds. */
export const DEFAULT_TOLERANCE_SECONDS = 300

/**
 * Returns the string that is signed: the timestamp, a dot, and the raw
 * request body exactly as sent. Covering the timestamp stops an old
 * request from being replayed later with a fresh timestamp header.
 */
export function signedString (timestamp: number, body: string): string {
  return `${timestamp}.${body}`
}

/** Computes the `X-Emdx-Signature` value for a body sent at `timestamp`. */
export function signWebhook (secret: Uint8Array | string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secret).update(signedString(timestamp, body), 'utf8').digest('hex')
  return `${SIGNATURE_VERSION}=${mac}`
}

export interface VerifyWebhookInput {
  secret: Uint8Array | string
  /** The raw request body, before any JSON parsing. */
  body: string | Uint8Array
  timestampHeader: string | undefined | null
  signatureHeader: string | undefined | null
  toleranceSeconds?: number
  /** The receiver's clock in ms since the epoch; Date.now() by default. */
  now?: number
}

/**
 * Checks a webhook request as a receiver would: the timestamp is an
 * integer within the tolerance of the receiver's clock, and the signature
 * is the HMAC-SHA256 of `{timestamp}.{raw body}` under the shared secret,
 * compared in constant time. Returns false on any mismatch.
 */
export function verifyWebhook (input: VerifyWebhookInput): boolean {
  const timestampText = input.timestampHeader ?? ''
  if (!/^\d{1,12}$/.test(timestampText) || typeof input.signatureHeader !== 'string') {
    return false
  }
  const timestamp = Number(timestampText)
  const now = Math.floor((input.now ?? Date.now()) / 1000)
  if (Math.abs(now - timestamp) > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) {
    return false
  }

  const body = typeof input.body === 'string' ? input.body : Buffer.from(input.body).toString('utf8')
  const expected = Buffer.from(signWebhook(input.secret, timestamp, body), 'utf8')
  const received = Buffer.from(input.signatureHeader, 'utf8')
  return received.byteLength === expected.byteLength && timingSafeEqual(received, expected)
}
