import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { silentLogger } from '../node/logger.js'
import { VERSION } from '../node/version.js'
import { deliverOnce } from './delivery.js'
import { WebhookError } from './errors.js'
import type { Logger } from '../node/logger.js'
import type { DeliveryOutcome } from './delivery.js'
import type { WebhookEvent, WebhookEventData, WebhookEventType } from './events.js'

export interface WebhookDispatcherOptions {
  /** The HMAC key, from loadWebhookSecret. */
  secret: string | Uint8Array
  /** Attempts per event, the first included. */
  maxAttempts?: number
  /** The wait before the second attempt, in ms; each later wait doubles. */
  baseDelayMs?: number
  maxDelayMs?: number
  /** The limit of one attempt, in ms. */
  timeoutMs?: number
  /** The maximum number of events waiting or in delivery, over all cascades. */
  maxQueuedEvents?: number
  /** The maximum number of requests in flight at once, over all cascades. */
  maxConcurrentDeliveries?: number
  maxRedirects?: number
  logger?: Logger
  /** Called once per event after it was delivered or given up. */
  onSettled?: (report: DeliveryReport) => void
}

/** The result of one event's delivery. */
export interface DeliveryReport {
  event: WebhookEvent
  /** The callback URL's origin; the path and query may carry a token, so they are left out. */
  origin: string
  delivered: boolean
  attempts: number
  /** The last attempt's outcome. */
  outcome: DeliveryOutcome
}

interface QueuedEvent {
  url: URL
  event: WebhookEvent
  body: string
}

const DEFAULTS = {
  maxAttempts: 6,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  timeoutMs: 10_000,
  maxQueuedEvents: 1000,
  maxConcurrentDeliveries: 8,
  maxRedirects: 3
}

/**
 * Delivers webhook events to callback URLs. Each cascade's events go out
 * one at a time, in the order they were queued; cascades do not wait for
 * each other. A failed attempt that may succeed later is retried with
 * exponential backoff until `maxAttempts`, after which the event is given
 * up and the cascade's next event is sent.
 *
 * NOTE: the queue is in memory, so events not yet delivered when the node
 * stops are lost.
 */
export class WebhookDispatcher {
  private readonly settings: typeof DEFAULTS
  private readonly secret: string | Uint8Array
  private readonly logger: Logger
  private readonly onSettled: ((report: DeliveryReport) => void) | undefined
  private readonly queues = new Map<string, QueuedEvent[]>()
  private readonly sequences = new Map<string, number>()
  private readonly workers = new Set<Promise<void>>()
  private readonly stopController = new AbortController()
  private queued = 0
  private inFlight = 0
  private readonly slotWaiters: Array<() => void> = []

  constructor (options: WebhookDispatcherOptions) {
    this.settings = {
      maxAttempts: options.maxAttempts ?? DEFAULTS.maxAttempts,
      baseDelayMs: options.baseDelayMs ?? DEFAULTS.baseDelayMs,
      maxDelayMs: options.maxDelayMs ?? DEFAULTS.maxDelayMs,
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      maxQueuedEvents: options.maxQueuedEvents ?? DEFAULTS.maxQueuedEvents,
      maxConcurrentDeliveries: options.maxConcurrentDeliveries ?? DEFAULTS.maxConcurrentDeliveries,
      maxRedirects: options.maxRedirects ?? DEFAULTS.maxRedirects
    }
    this.secret = options.secret
    this.logger = (options.logger ?? silentLogger()).child({ component: 'webhooks' })
    this.onSettled = options.onSettled
  }

  /**
   * Queues an event for the cascade's callback URL and returns it. Raises a
   * WebhookError for a URL that is not http or https, when the queue is
   * full, or after stop().
   */
  enqueue<T extends WebhookEventType>(callbackUrl: string, cascadeId: string, type: T, data: WebhookEventData[T]): WebhookEvent<T> {
    if (this.stopController.signal.aborted) {
      throw new WebhookError('ERR_WEBHOOK_STOPPED', 'the webhook dispatcher is stopped; events can no longer be queued')
    }
    const url = parseCallbackUrl(callbackUrl)
    if (this.queued >= this.settings.maxQueuedEvents) {
      this.logger.warn({ cascade: cascadeId, type, queued: this.queued }, 'webhook queue full; event not queued')
      throw new WebhookError('ERR_WEBHOOK_QUEUE_FULL', `the webhook queue is full with ${this.settings.maxQueuedEvents} events (maxQueuedEvents); the ${type} event of cascade ${cascadeId} was not queued, so raise the limit or fix the slow receivers`)
    }

    const sequence = (this.sequences.get(cascadeId) ?? 0) + 1
    this.sequences.set(cascadeId, sequence)
    const event: WebhookEvent<T> = { id: randomUUID(), type, cascade_id: cascadeId, sequence, created_at: new Date().toISOString(), data }

    const queue = this.queues.get(cascadeId)
    const entry = { url, event, body: JSON.stringify(event) }
    this.queued++
    if (queue !== undefined) {
      queue.push(entry)
    } else {
      this.queues.set(cascadeId, [entry])
      this.startWorker(cascadeId)
    }
    return event
  }

  /** Resolves when every queued event has been delivered or given up. */
  async drain (signal?: AbortSignal): Promise<void> {
    while (this.workers.size > 0) {
      signal?.throwIfAborted()
      await Promise.race([...this.workers, ...(signal === undefined ? [] : [abortPromise(signal)])])
    }
  }

  /** Stops delivering: requests in flight and backoff waits are cancelled, and queued events are dropped. */
  async stop (): Promise<void> {
    this.stopController.abort(new WebhookError('ERR_WEBHOOK_STOPPED', 'the webhook dispatcher was stopped'))
    for (const wake of this.slotWaiters.splice(0)) {
      wake()
    }
    await Promise.allSettled([...this.workers])
    if (this.queued > 0) {
      this.logger.warn({ dropped: this.queued }, 'webhook dispatcher stopped with events not delivered')
    }
  }

  private startWorker (cascadeId: string): void {
    const worker = this.runQueue(cascadeId).catch((err: unknown) => {
      if (!this.stopController.signal.aborted) {
        this.logger.error({ err, cascade: cascadeId }, 'webhook worker failed')
      }
    }).finally(() => {
      this.workers.delete(worker)
    })
    this.workers.add(worker)
  }

  private async runQueue (cascadeId: string): Promise<void> {
    const queue = this.queues.get(cascadeId) as QueuedEvent[]
    try {
      while (queue.length > 0) {
        const entry = queue[0] as QueuedEvent
        await this.deliverWithRetries(entry)
        queue.shift()
        this.queued--
        // A cascade's last event ends its numbering, so the map does not grow without end.
        if (entry.event.type !== 'stage_completed' && queue.length === 0) {
          this.sequences.delete(cascadeId)
        }
      }
    } finally {
      this.queued -= queue.length
      this.queues.delete(cascadeId)
    }
  }

  private async deliverWithRetries (entry: QueuedEvent): Promise<void> {
    const signal = this.stopController.signal
    const ids = { cascade: entry.event.cascade_id, event: entry.event.id, type: entry.event.type, origin: entry.url.origin }
    let outcome: DeliveryOutcome = { delivered: false, retryable: true }
    let attempt = 0

    while (attempt < this.settings.maxAttempts) {
      attempt++
      outcome = await this.withSlot(signal, async () => await deliverOnce({
        url: entry.url,
        event: entry.event,
        body: entry.body,
        secret: this.secret,
        timeoutMs: this.settings.timeoutMs,
        maxRedirects: this.settings.maxRedirects,
        userAgent: `emdx-node/${VERSION}`,
        signal
      }))
      if (outcome.delivered || !outcome.retryable || attempt === this.settings.maxAttempts) {
        break
      }
      const delayMs = this.backoff(attempt)
      this.logger.warn({ ...ids, attempt, status: outcome.status, reason: outcome.reason, delayMs }, 'webhook attempt failed; retrying')
      await sleep(delayMs, undefined, { signal })
    }

    if (outcome.delivered) {
      this.logger.debug({ ...ids, attempts: attempt }, 'webhook delivered')
    } else {
      this.logger.error({ ...ids, attempts: attempt, status: outcome.status, reason: outcome.reason }, 'webhook given up')
    }
    this.onSettled?.({ event: entry.event, origin: entry.url.origin, delivered: outcome.delivered, attempts: attempt, outcome })
  }

  /** Returns the wait after failed attempt `attempt` (1-based): base × 2^(attempt−1), at most maxDelayMs, with ±20 % jitter. */
  private backoff (attempt: number): number {
    const delay = Math.min(this.settings.maxDelayMs, this.settings.baseDelayMs * 2 ** Math.min(attempt - 1, 30))
    return Math.round(delay * (0.8 + Math.random() * 0.4))
  }

  /** Runs `task` once fewer than maxConcurrentDeliveries requests are in flight. */
  private async withSlot<T> (signal: AbortSignal, task: () => Promise<T>): Promise<T> {
    while (this.inFlight >= this.settings.maxConcurrentDeliveries) {
      signal.throwIfAborted()
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve))
    }
    signal.throwIfAborted()
    this.inFlight++
    try {
      return await task()
    } finally {
      this.inFlight--
      this.slotWaiters.shift()?.()
    }
  }
}

/** Parses a callback URL, accepting only absolute http and https URLs without user name or password. */
export function parseCallbackUrl (callbackUrl: string): URL {
  let url: URL
  try {
    url = new URL(callbackUrl)
  } catch (err) {
    throw new WebhookError('ERR_WEBHOOK_URL', `invalid callback_url ${JSON.stringify(callbackUrl)}: not an absolute URL; pass an http or https URL`, { cause: err })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WebhookError('ERR_WEBHOOK_URL', `invalid callback_url: scheme ${url.protocol} is not supported; pass an http or https URL`)
  }
  if (url.username !== '' || url.password !== '') {
    throw new WebhookError('ERR_WEBHOOK_URL', 'invalid callback_url: it contains a user name or password; receivers check the X-Emdx-Signature header instead')
  }
  return url
}

async function abortPromise (signal: AbortSignal): Promise<never> {
  return await new Promise<never>((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}
