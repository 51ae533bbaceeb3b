import Fastify, { LogController } from 'fastify'
import { PortInUseError } from '../node/errors.js'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Logger } from '../node/logger.js'

export type ApiApp = FastifyInstance

export interface ApiServerInit {
  host: string
  port: number
  logger: Logger
  /** Registers the routes of each component on the app before it listens. */
  register: (app: ApiApp) => void | Promise<void>
}

export interface ApiServer {
  app: ApiApp
  url: string
  port: number
  close: () => Promise<void>
}

/** Maximum request body; the API takes ideas and settings, never payloads. */
const BODY_LIMIT_BYTES = 1024 * 1024

/**
 * Rejects requests whose Host header names anything but this machine's
 * loopback. A web page the user visits can make a browser send requests to
 * 127.0.0.1 under a name that resolves there (DNS rebinding); the browser
 * then sends that name as the Host, so checking it keeps such pages away
 * from an API that has no authentication.
 */
function rejectForeignHosts (app: ApiApp): void {
  app.addHook('onRequest', async (request, reply) => {
    const address = app.server.address()
    const port = typeof address === 'object' && address != null ? address.port : 0
    const allowed = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
    const host = (request.headers.host ?? '').toLowerCase()
    if (!allowed.has(host)) {
      await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: `requests must be addressed to 127.0.0.1:${port} or localhost:${port}, not ${JSON.stringify(host.slice(0, 100))}; this protects the local API from web pages that rebind a domain to 127.0.0.1` })
    }
  })
}

/**
 * Starts the HTTP API. It listens on loopback only: the API has no
 * authentication, so any process that can reach it can act as the user.
 */
export async function startApiServer (init: ApiServerInit): Promise<ApiServer> {
  const app = Fastify({
    loggerInstance: init.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Server-sent event streams stay open; closing the server must not wait
    // for their clients to hang up.
    forceCloseConnections: true
  })
  rejectForeignHosts(app)
  await init.register(app)

  try {
    await app.listen({ host: init.host, port: init.port })
  } catch (err) {
    await app.close()
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new PortInUseError(init.port, `API port ${init.port} on ${init.host} is already in use; stop the process using it or pass --api-port with another port`, { cause: err })
    }
    throw err
  }

  const address = app.server.address()
  const port = typeof address === 'object' && address != null ? address.port : init.port
  const host = init.host.includes(':') ? `[${init.host}]` : init.host
  return {
    app,
    url: `http://${host}:${port}`,
    port,
    close: async () => { await app.close() }
  }
}
