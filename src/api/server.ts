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
