import { z } from 'zod'
import { CascadeRequestError } from '../cascade/pipeline.js'
import { STAGES, StageError } from '../cascade/stages.js'
import { parseSize } from '../node/units.js'
import { openEventStream } from './event-stream.js'
import type { CascadeEvents } from '../cascade/events.js'
import type { CascadeRequest, CascadeService } from '../cascade/pipeline.js'
import type { DocumentStore } from '../knowledge/document-store.js'
import type { ApiApp } from './server.js'
import type { FastifyReply } from 'fastify'

export interface CascadeRouteSource {
  cascades: CascadeService
  events: CascadeEvents
  documents: DocumentStore
}

const MAX_CONTENT_CHARS = 1024 * 1024
const KEEPALIVE_MS = 15_000

/** The body of `POST /api/v1/cascade`. Unknown fields are rejected, so typos do not pass silently. */
export const cascadeBodySchema = z.strictObject({
  content: z.string().min(1).max(MAX_CONTENT_CHARS).optional(),
  documentId: z.number().int().positive().optional(),
  title: z.string().min(1).max(200).optional(),
  stage: z.enum(STAGES).optional(),
  stop: z.enum(STAGES).optional(),
  auto: z.boolean().optional(),
  analyze: z.boolean().optional(),
  plan: z.boolean().optional(),
  /** True (or "p2p") to run every stage on other nodes. */
  remote: z.union([z.boolean(), z.literal('p2p')]).optional(),
  repo: z.string().min(1).max(4096).optional(),
  model: z.string().min(1).max(100).regex(/^[A-Za-z0-9._:@-]+$/).optional(),
  project: z.string().min(1).max(200).optional(),
  /** Wall-clock limit of each stage, in seconds. */
  timeoutSeconds: z.number().int().min(10).max(86_400).optional(),
  cpus: z.number().min(0.1).max(64).optional(),
  /** Memory of each stage, such as "1g", or a number of bytes. */
  memory: z.union([z.string(), z.number().int().positive()]).optional(),
  /** The maximum one stage may cost, in millicredits. */
  maxCredits: z.number().int().positive().max(1e12).optional(),
  callbackUrl: z.url({ protocol: /^https?$/ }).optional(),
  callback_url: z.url({ protocol: /^https?$/ }).optional()
}).refine(body => body.content !== undefined || body.documentId !== undefined, { message: 'give content (the idea) or documentId' })

function badRequest (reply: FastifyReply, message: string): FastifyReply {
  return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message })
}

function notFound (reply: FastifyReply, message: string): FastifyReply {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
}

/**
 * Registers the cascade gateway: `POST /api/v1/cascade`, `GET /api/v1/cascade/:id`,
 * `GET /api/v1/cascades`, `POST /api/v1/cascade/:id/cancel`, the event
 * stream `GET /api/v1/events` and the documents cascades wrote.
 */
export function registerCascadeRoutes (app: ApiApp, source: CascadeRouteSource): void {
  app.post('/api/v1/cascade', async (request, reply) => {
    const parsed = cascadeBodySchema.safeParse(request.body)
    if (!parsed.success) {
      return badRequest(reply, `invalid cascade request: ${z.prettifyError(parsed.error)}`)
    }
    const body = parsed.data
    const memoryBytes = typeof body.memory === 'string' ? parseSize(body.memory) : body.memory
    if (body.memory !== undefined && memoryBytes === undefined) {
      return badRequest(reply, `invalid memory ${JSON.stringify(body.memory)}: expected a size such as 512m or 2g`)
    }

    const cascadeRequest: CascadeRequest = {
      content: body.content,
      documentId: body.documentId,
      title: body.title,
      stage: body.stage,
      stop: body.stop,
      auto: body.auto,
      analyze: body.analyze,
      plan: body.plan,
      remote: body.remote === true || body.remote === 'p2p',
      repo: body.repo,
      model: body.model,
      project: body.project,
      timeoutMs: body.timeoutSeconds === undefined ? undefined : body.timeoutSeconds * 1000,
      cpus: body.cpus,
      memoryBytes,
      maxCredits: body.maxCredits,
      callbackUrl: body.callbackUrl ?? body.callback_url
    }
    try {
      const record = await source.cascades.submit(cascadeRequest)
      return await reply.code(201).send(record)
    } catch (err) {
      if (err instanceof CascadeRequestError || err instanceof StageError) {
        return badRequest(reply, err.message)
      }
      throw err
    }
  })

  app.get<{ Params: { id: string } }>('/api/v1/cascade/:id', async (request, reply) => {
    const record = await source.cascades.get(request.params.id)
    return record ?? notFound(reply, `no cascade ${request.params.id}; list them with GET /api/v1/cascades`)
  })

  app.get<{ Querystring: { limit?: string } }>('/api/v1/cascades', async (request) => {
    const limit = Math.min(500, Math.max(1, Number(request.query.limit ?? 50) || 50))
    return { cascades: (await source.cascades.list()).slice(0, limit) }
  })

  app.post('/api/v1/cascades/sync', async () => {
    const resumed = await source.cascades.resume()
    return { resumed, cascades: (await source.cascades.list()).filter(record => record.status === 'running') }
  })

  app.post<{ Params: { id: string } }>('/api/v1/cascade/:id/cancel', async (request, reply) => {
    const record = await source.cascades.get(request.params.id)
    if (record === undefined) {
      return notFound(reply, `no cascade ${request.params.id}`)
    }
    if (!await source.cascades.cancel(request.params.id)) {
      return await reply.code(409).send({ statusCode: 409, error: 'Conflict', message: `cascade ${request.params.id} is ${record.status}, not running` })
    }
    return await source.cascades.get(request.params.id)
  })

  app.get<{ Params: { id: string } }>('/api/v1/documents/:id', async (request, reply) => {
    const id = Number(request.params.id)
    const document = Number.isSafeInteger(id) && id > 0 ? await source.documents.getDocument(id) : undefined
    return document ?? notFound(reply, `no document ${request.params.id} in ${source.documents.location}`)
  })

  app.get<{ Params: { id: string } }>('/api/v1/documents/:id/children', async (request) => {
    const id = Number(request.params.id)
    return { documents: Number.isSafeInteger(id) && id > 0 ? await source.documents.children(id) : [] }
  })

  registerEventStream(app, source.events)
}

/**
 * `GET /api/v1/events`: server-sent events of every cascade, or of one with
 * `?cascade=ID`. A client that reconnects with `Last-Event-ID` (or
 * `?since=ID`) first gets the events it missed that are still kept.
 */
function registerEventStream (app: ApiApp, events: CascadeEvents): void {
  app.get<{ Querystring: { cascade?: string, since?: string } }>('/api/v1/events', async (request, reply) => {
    const cascade = request.query.cascade
    const lastId = Number(request.headers['last-event-id'] ?? request.query.since ?? 0) || 0

    const response = openEventStream(reply)
    const send = ({ id, event }: { id: number, event: { type: string, cascadeId: string } }): void => {
      if (cascade === undefined || event.cascadeId === cascade) {
        response.write(`id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
      }
    }

    response.write(': connected\n\n')
    events.since(lastId).forEach(send)
    const unsubscribe = events.subscribe(send)
    const keepalive = setInterval(() => { response.write(': keepalive\n\n') }, KEEPALIVE_MS)
    request.raw.on('close', () => {
      clearInterval(keepalive)
      unsubscribe()
    })
  })
}
