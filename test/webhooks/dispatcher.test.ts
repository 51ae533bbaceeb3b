import { afterEach, describe, expect, it } from 'vitest'
import { WebhookDispatcher } from '../../src/webhooks/dispatcher.js'
import { WebhookError } from '../../src/webhooks/errors.js'
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signWebhook, verifyWebhook } from '../../src/webhooks/signature.js'
import { deadUrl, startReceiver } from '../support/http-receiver.js'
import type { DeliveryReport, WebhookDispatcherOptions } from '../../src/webhooks/dispatcher.js'
import type { WebhookEvent } from '../../src/webhooks/events.js'
import type { ReceivedRequest } from '../support/http-receiver.js'

const SECRET = 'f3a1c9e07b5d4a6e8c2b1d0f9e8a7b6c5d4e3f2a1b0c9d8e'
const dispatchers: WebhookDispatcher[] = []

afterEach(async () => {
  for (const dispatcher of dispatchers.splice(0)) {
    await dispatcher.stop()
  }
})

function newDispatcher (options: Partial<WebhookDispatcherOptions> = {}): { dispatcher: WebhookDispatcher, reports: DeliveryReport[] } {
  const reports: DeliveryReport[] = []
  const dispatcher = new WebhookDispatcher({ secret: SECRET, baseDelayMs: 20, maxDelayMs: 200, timeoutMs: 2000, onSettled: (report) => reports.push(report), ...options })
  dispatchers.push(dispatcher)
  return { dispatcher, reports }
}

function verify (request: ReceivedRequest, body = request.body, secret = SECRET): boolean {
  return verifyWebhook({
    secret,
    body,
    timestampHeader: request.headers[TIMESTAMP_HEADER] as string,
    signatureHeader: request.headers[SIGNATURE_HEADER] as string
  })
}

function stageCompleted (dispatcher: WebhookDispatcher, url: string, cascadeId: string, documentId: number): WebhookEvent {
  return dispatcher.enqueue(url, cascadeId, 'stage_completed', { stage: 'idea', next_stage: 'prompt', document_id: documentId })
}

describe('WebhookDispatcher delivery', () => {
  it('delivers signed events in order', async () => {
    const receiver = await startReceiver()
    const { dispatcher } = newDispatcher()

    for (let documentId = 1; documentId <= 4; documentId++) {
      stageCompleted(dispatcher, receiver.url, 'c-1', documentId)
    }
    dispatcher.enqueue(receiver.url, 'c-1', 'cascade_completed', { final_stage: 'done', document_ids: [1, 2, 3, 4] })
    await dispatcher.drain()

    const bodies = receiver.requests.map((request) => JSON.parse(request.body) as WebhookEvent)
    expect(bodies.map((body) => body.sequence)).toEqual([1, 2, 3, 4, 5])
    expect(bodies.map((body) => body.type)).toEqual(['stage_completed', 'stage_completed', 'stage_completed', 'stage_completed', 'cascade_completed'])
    expect(bodies.map((body) => (body.data as { document_id?: number }).document_id)).toEqual([1, 2, 3, 4, undefined])
    for (const request of receiver.requests) {
      expect(verify(request)).toBe(true)
    }
  })

  it('sends the documented headers', async () => {
    const receiver = await startReceiver()
    const { dispatcher } = newDispatcher()

    const event = dispatcher.enqueue(receiver.url, 'c-2', 'cascade_failed', { stage: 'analyzed', error: 'no provider accepted the stage' })
    await dispatcher.drain()

    const request = receiver.requests[0] as ReceivedRequest
    expect(request.method).toBe('POST')
    expect(request.path).toBe('/hooks/emdx')
    expect(request.headers['content-type']).toBe('application/json')
    expect(request.headers[EVENT_HEADER]).toBe('cascade_failed')
    expect(request.headers[DELIVERY_HEADER]).toBe(event.id)
    expect(request.headers[SIGNATURE_HEADER]).toBe(signWebhook(SECRET, Number(request.headers[TIMESTAMP_HEADER]), request.body))
    expect(JSON.parse(request.body)).toEqual(event)
  })

  it('tampering fails verification', async () => {
    const receiver = await startReceiver()
    const { dispatcher } = newDispatcher()
    stageCompleted(dispatcher, receiver.url, 'c-3', 7)
    await dispatcher.drain()
    const request = receiver.requests[0] as ReceivedRequest
    const signature = request.headers[SIGNATURE_HEADER] as string
    const timestamp = request.headers[TIMESTAMP_HEADER] as string

    expect(verify(request)).toBe(true)
    expect(verify(request, request.body.replace('"document_id":7', '"document_id":8'))).toBe(false)
    expect(verify(request, `${request.body} `)).toBe(false)
    expect(verify(request, request.body, `${SECRET.slice(1)}0`)).toBe(false)
    const flipped = signature.slice(0, -1) + (signature.endsWith('0') ? '1' : '0')
    expect(verifyWebhook({ secret: SECRET, body: request.body, timestampHeader: timestamp, signatureHeader: flipped })).toBe(false)
    expect(verifyWebhook({ secret: SECRET, body: request.body, timestampHeader: String(Number(timestamp) + 1), signatureHeader: signature })).toBe(false)
  })

  it('rejects stale or missing timestamps', () => {
    const body = '{"type":"stage_completed"}'
    const timestamp = Math.floor(Date.now() / 1000) - 600
    const signature = signWebhook(SECRET, timestamp, body)

    expect(verifyWebhook({ secret: SECRET, body, timestampHeader: String(timestamp), signatureHeader: signature })).toBe(false)
    expect(verifyWebhook({ secret: SECRET, body, timestampHeader: String(timestamp), signatureHeader: signature, toleranceSeconds: 900 })).toBe(true)
    expect(verifyWebhook({ secret: SECRET, body, timestampHeader: undefined, signatureHeader: signature })).toBe(false)
    expect(verifyWebhook({ secret: SECRET, body, timestampHeader: '1e9', signatureHeader: signature })).toBe(false)
  })

  it('succeeds on the third attempt', async () => {
    const receiver = await startReceiver((_request, index) => ({ status: index < 2 ? 503 : 200 }))
    const { dispatcher, reports } = newDispatcher({ maxAttempts: 5 })

    const event = stageCompleted(dispatcher, receiver.url, 'c-4', 1)
    await dispatcher.drain()

    expect(receiver.requests).toHaveLength(3)
    expect(receiver.requests.map((request) => request.headers[DELIVERY_HEADER])).toEqual([event.id, event.id, event.id])
    expect(receiver.requests.every((request) => verify(request))).toBe(true)
    expect(reports).toHaveLength(1)
    expect(reports[0]?.delivered).toBe(true)
    expect(reports[0]?.attempts).toBe(3)
  })

  it('waits longer after each failure', async () => {
    const receiver = await startReceiver((_request, index) => ({ status: index < 3 ? 500 : 200 }))
    const { dispatcher } = newDispatcher({ maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 10_000 })

    stageCompleted(dispatcher, receiver.url, 'c-5', 1)
    await dispatcher.drain()

    const gaps = receiver.requests.slice(1).map((request, index) => request.at - (receiver.requests[index] as ReceivedRequest).at)
    // Waits of 100, 200 and 400 ms, each within the ±20 % jitter.
    expect(gaps[0]).toBeGreaterThanOrEqual(75)
    expect(gaps[1]).toBeGreaterThanOrEqual(155)
    expect(gaps[2]).toBeGreaterThanOrEqual(315)
    expect(gaps[2] as number).toBeGreaterThan(gaps[0] as number)
  })

  it('gives up on a dead URL', async () => {
    const dead = await deadUrl()
    const receiver = await startReceiver()
    const { dispatcher, reports } = newDispatcher({ maxAttempts: 3, baseDelayMs: 300, maxDelayMs: 1000 })

    stageCompleted(dispatcher, dead, 'dead-cascade', 1)
    stageCompleted(dispatcher, receiver.url, 'live-cascade', 1)
    stageCompleted(dispatcher, receiver.url, 'live-cascade', 2)
    await dispatcher.drain()

    const deadReport = reports.find((report) => report.event.cascade_id === 'dead-cascade')
    expect(deadReport?.delivered).toBe(false)
    expect(deadReport?.attempts).toBe(3)
    expect(deadReport?.outcome.reason).toMatch(/request failed: ECONNREFUSED/)
    expect(reports.filter((report) => report.event.cascade_id === 'live-cascade' && report.delivered)).toHaveLength(2)
    // The live cascade's events arrived while the dead one was still in its backoff.
    expect(reports.at(-1)?.event.cascade_id).toBe('dead-cascade')
  })

  it('keeps order after giving up', async () => {
    const receiver = await startReceiver((request) => ({ status: request.body.includes('"document_id":1') ? 500 : 200 }))
    const { dispatcher, reports } = newDispatcher({ maxAttempts: 2 })

    stageCompleted(dispatcher, receiver.url, 'c-6', 1)
    stageCompleted(dispatcher, receiver.url, 'c-6', 2)
    await dispatcher.drain()

    expect(reports.map((report) => [report.event.sequence, report.delivered])).toEqual([[1, false], [2, true]])
    expect(receiver.requests.map((request) => (JSON.parse(request.body) as WebhookEvent).sequence)).toEqual([1, 1, 2])
  })

  it('does not retry a 4xx status', async () => {
    const receiver = await startReceiver(() => ({ status: 400 }))
    const { dispatcher, reports } = newDispatcher()

    stageCompleted(dispatcher, receiver.url, 'c-7', 1)
    await dispatcher.drain()

    expect(receiver.requests).toHaveLength(1)
    expect(reports[0]?.outcome.reason).toBe('receiver returned status 400')
  })

  it('retries a 429 status', async () => {
    const receiver = await startReceiver((_request, index) => ({ status: index === 0 ? 429 : 204 }))
    const { dispatcher, reports } = newDispatcher()

    stageCompleted(dispatcher, receiver.url, 'c-8', 1)
    await dispatcher.drain()

    expect(reports[0]?.attempts).toBe(2)
    expect(reports[0]?.delivered).toBe(true)
  })

  it('times out a silent receiver', async () => {
    const receiver = await startReceiver(() => 'hold')
    const { dispatcher, reports } = newDispatcher({ timeoutMs: 200, maxAttempts: 2 })

    stageCompleted(dispatcher, receiver.url, 'c-9', 1)
    await dispatcher.drain()

    expect(receiver.requests).toHaveLength(2)
    expect(reports[0]?.outcome.reason).toBe('timed out after 200 ms')
  })
})

describe('WebhookDispatcher redirects', () => {
  it('follows a same-origin 307', async () => {
    const receiver = await startReceiver((request) => request.path === '/hooks/emdx' ? { status: 307, headers: { location: '/hooks/final' } } : { status: 200 })
    const { dispatcher, reports } = newDispatcher()

    stageCompleted(dispatcher, receiver.url, 'c-10', 1)
    await dispatcher.drain()

    expect(receiver.requests.map((request) => `${request.method} ${request.path}`)).toEqual(['POST /hooks/emdx', 'POST /hooks/final'])
    expect(verify(receiver.requests[1] as ReceivedRequest)).toBe(true)
    expect(reports[0]?.delivered).toBe(true)
  })

  it('refuses a redirect to another host', async () => {
    const other = await startReceiver()
    const receiver = await startReceiver(() => ({ status: 307, headers: { location: `${other.origin}/collect` } }))
    const { dispatcher, reports } = newDispatcher()

    stageCompleted(dispatcher, receiver.url, 'c-11', 1)
    await dispatcher.drain()

    expect(other.requests).toHaveLength(0)
    expect(receiver.requests).toHaveLength(1)
    expect(reports[0]?.delivered).toBe(false)
    expect(reports[0]?.outcome.reason).toContain(`redirect to another origin ${other.origin} is not followed`)
  })

  it('does not follow a 302', async () => {
    const receiver = await startReceiver((request) => request.path === '/hooks/emdx' ? { status: 302, headers: { location: '/hooks/final' } } : { status: 200 })
    const { dispatcher, reports } = newDispatcher()

    stageCompleted(dispatcher, receiver.url, 'c-12', 1)
    await dispatcher.drain()

    expect(receiver.requests).toHaveLength(1)
    expect(reports[0]?.outcome.reason).toContain('redirect status 302 is not followed')
  })

  it('limits same-origin redirects', async () => {
    const receiver = await startReceiver((_request, index) => ({ status: 308, headers: { location: `/hooks/hop-${index}` } }))
    const { dispatcher, reports } = newDispatcher({ maxRedirects: 2 })

    stageCompleted(dispatcher, receiver.url, 'c-13', 1)
    await dispatcher.drain()

    expect(receiver.requests).toHaveLength(3)
    expect(reports[0]?.outcome.reason).toBe('more than 2 redirects')
  })
})

describe('WebhookDispatcher queue', () => {
  it.each([
    ['ftp://127.0.0.1/hook'],
    ['file:///etc/passwd'],
    ['/relative/hook'],
    ['http://user:password@127.0.0.1/hook']
  ])('rejects callback URL %s', (url) => {
    const { dispatcher } = newDispatcher()

    const call = (): unknown => dispatcher.enqueue(url, 'c-14', 'cascade_failed', { stage: 'idea', error: 'x' })

    expect(call).toThrow(WebhookError)
    expect(call).toThrow(/invalid callback_url/)
  })

  it('bounds the number of queued events', async () => {
    const receiver = await startReceiver(() => 'hold')
    const { dispatcher } = newDispatcher({ maxQueuedEvents: 2, timeoutMs: 30_000 })
    stageCompleted(dispatcher, receiver.url, 'c-15', 1)
    stageCompleted(dispatcher, receiver.url, 'c-16', 1)

    let err: unknown
    try {
      stageCompleted(dispatcher, receiver.url, 'c-17', 1)
    } catch (caught) {
      err = caught
    }

    expect((err as WebhookError).code).toBe('ERR_WEBHOOK_QUEUE_FULL')
    expect((err as WebhookError).message).toContain('the webhook queue is full with 2 events (maxQueuedEvents)')
  })

  it('stop cancels pending retries', async () => {
    const { dispatcher, reports } = newDispatcher({ maxAttempts: 10, baseDelayMs: 60_000, maxDelayMs: 60_000 })
    stageCompleted(dispatcher, await deadUrl(), 'c-18', 1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = Date.now()

    await dispatcher.stop()

    expect(Date.now() - started).toBeLessThan(2000)
    expect(reports).toEqual([])
    expect(() => stageCompleted(dispatcher, 'http://127.0.0.1/hook', 'c-18', 2)).toThrow(/stopped/)
  })

  it('numbers each cascade separately', async () => {
    const receiver = await startReceiver()
    const { dispatcher } = newDispatcher()

    const first = stageCompleted(dispatcher, receiver.url, 'c-19', 1)
    const other = stageCompleted(dispatcher, receiver.url, 'c-20', 1)
    const second = stageCompleted(dispatcher, receiver.url, 'c-19', 2)
    await dispatcher.drain()

    expect([first.sequence, other.sequence, second.sequence]).toEqual([1, 1, 2])
  })
})
