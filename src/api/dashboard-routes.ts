import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { openEventStream } from './event-stream.js'
import type { DashboardFeed } from '../dashboard/feed.js'
import type { DashboardSnapshot } from '../dashboard/snapshot-types.js'
import type { ApiApp } from './server.js'
import type { FastifyReply } from 'fastify'

export interface DashboardRouteSource {
  feed: DashboardFeed
  snapshot: () => Promise<DashboardSnapshot>
  /** Folder of the built page; `dist/browser/dashboard/page` of this package by default. */
  pageDir?: string
}

/**
 * The built page, found from the package root: this module is
 * `src/api/dashboard-routes.ts` when tests run the sources and
 * `dist/api/dashboard-routes.js` when built, two levels deep either way.
 */
export const DEFAULT_PAGE_DIR = fileURLToPath(new URL('../../dist/browser/dashboard/page/', import.meta.url))

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

/** Asset names the page may load: one flat folder, no paths. */
const ASSET_NAME = /^[a-z0-9-]+\.(js|css|svg)$/

/** The page loads only its own files and talks only to this node. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** Bytes a slow client may have waiting before snapshots to it are dropped. */
const MAX_PENDING_BYTES = 1024 * 1024

/**
 * Registers the dashboard: the page at `/` and its files under `/dashboard/`,
 * `GET /api/v1/dashboard` (one snapshot as JSON) and
 * `GET /api/v1/dashboard/events` (server-sent events: a `snapshot` every
 * second and each `cascade` event).
 */
export function registerDashboardRoutes (app: ApiApp, source: DashboardRouteSource): void {
  const pageDir = source.pageDir ?? DEFAULT_PAGE_DIR

  app.get('/', async (_request, reply) => {
    return await sendPageFile(reply, pageDir, 'index.html')
  })

  app.get<{ Params: { file: string } }>('/dashboard/:file', async (request, reply) => {
    if (!ASSET_NAME.test(request.params.file)) {
      return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no dashboard file ${request.params.file}` })
    }
    return await sendPageFile(reply, pageDir, request.params.file)
  })

  app.get('/api/v1/dashboard', async () => await source.snapshot())

  app.get('/api/v1/dashboard/events', async (_request, reply) => {
    const response = openEventStream(reply)
    // Browsers reconnect after this many milliseconds when the node restarts.
    response.write('retry: 2000\n\n')

    const unsubscribe = source.feed.subscribe({
      snapshot: (snapshot) => {
        if (response.writableLength <= MAX_PENDING_BYTES) {
          response.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`)
        }
      },
      cascadeEvent: (entry) => {
        response.write(`id: ${entry.id}\nevent: cascade\ndata: ${JSON.stringify(entry)}\n\n`)
      }
    })
    // The response closes when the client goes away; the request may have closed once it was read.
    response.on('close', unsubscribe)
  })

  app.addHook('onClose', async () => { source.feed.stop() })
}

async function sendPageFile (reply: FastifyReply, pageDir: string, name: string): Promise<FastifyReply> {
  let body: Buffer
  try {
    body = await readFile(path.join(pageDir, name))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw err
    }
    if (name === 'index.html') {
      return await reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: `the dashboard page is not built (${pageDir} has no index.html); run npm run build` })
    }
    return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no dashboard file ${name}` })
  }

  return await reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .type(CONTENT_TYPES[path.extname(name)] ?? 'application/octet-stream')
    .send(body)
}
