import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signWebhook } from './signature.js'
import type { WebhookEvent } from './events.js'

/** Redirect statuses that keep the method and body, so a POST stays a POST. */
const FOLLOWED_REDIRECTS = new Set([307, 308])

export interface DeliveryRequest {
  url: URL
  event: WebhookEvent
  body: string
  secret: string | Uint8Array
  timeoutMs: number
  maxRedirects: number
  userAgent: string
  signal: AbortSignal
}

export interface DeliveryOutcome {
  delivered: boolean
  /** Whether another attempt may succeed: network errors, timeouts, 408, 429 and 5xx. */
  retryable: boolean
  status?: number
  /** The reason the attempt failed, for logs and reports; it never contains the body or the secret. */
  reason?: string
}

/**
 * Sends one signed attempt of an event. A 2xx status is success. Redirects
 * with status 307 or 308 are followed to the same origin only, at most
 * `maxRedirects` times, because a redirect to another host would send the
 * event and its signature to a server the user did not name. Other 3xx
 * and 4xx statuses except 408 and 429 are not retried.
 */
export async function deliverOnce (request: DeliveryRequest): Promise<DeliveryOutcome> {
  const timestamp = Math.floor(Date.now() / 1000)
  const headers = {
    'content-type': 'application/json',
    'user-agent': request.userAgent,
    [EVENT_HEADER]: request.event.type,
    [DELIVERY_HEADER]: request.event.id,
    [TIMESTAMP_HEADER]: String(timestamp),
    [SIGNATURE_HEADER]: signWebhook(request.secret, timestamp, request.body)
  }
  const signal = AbortSignal.any([request.signal, AbortSignal.timeout(request.timeoutMs)])

  let url = request.url
  for (let redirects = 0; ; redirects++) {
    let response: Response
    try {
      response = await fetch(url, { method: 'POST', headers, body: request.body, redirect: 'manual', signal })
    } catch (err) {
      request.signal.throwIfAborted()
      const timedOut = signal.aborted
      return { delivered: false, retryable: true, reason: timedOut ? `timed out after ${request.timeoutMs} ms` : `request failed: ${describeError(err)}` }
    }
    await response.body?.cancel().catch(() => undefined)

    if (response.status >= 200 && response.status < 300) {
      return { delivered: true, retryable: false, status: response.status }
    }
    if (!FOLLOWED_REDIRECTS.has(response.status)) {
      return classifyStatus(response.status)
    }

    const next = redirectTarget(url, response.headers.get('location'))
    if (next === undefined) {
      return { delivered: false, retryable: false, status: response.status, reason: `redirect with status ${response.status} has no valid Location` }
    }
    if (next.origin !== request.url.origin) {
      return { delivered: false, retryable: false, status: response.status, reason: `redirect to another origin ${next.origin} is not followed; set callback_url to the final address` }
    }
    if (redirects >= request.maxRedirects) {
      return { delivered: false, retryable: false, status: response.status, reason: `more than ${request.maxRedirects} redirects` }
    }
    url = next
  }
}

function classifyStatus (status: number): DeliveryOutcome {
  const retryable = status === 408 || status === 429 || status >= 500
  const reason = status >= 300 && status < 400
    ? `redirect status ${status} is not followed; set callback_url to the final address`
    : `receiver returned status ${status}`
  return { delivered: false, retryable, status, reason }
}

function redirectTarget (from: URL, location: string | null): URL | undefined {
  if (location === null) {
    return undefined
  }
  try {
    return new URL(location, from)
  } catch {
    return undefined
  }
}

function describeError (err: unknown): string {
  const cause = (err as { cause?: { code?: string, message?: string } }).cause
  return cause?.code ?? cause?.message ?? (err as Error).message
}
