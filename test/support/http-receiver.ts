import { createServer } from 'node:http'
import { afterEach } from 'vitest'
import type { IncomingHttpHeaders, Server } from 'node:http'

/** One request a receiver got. */
export interface ReceivedRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  /** The raw body, as the signature covers it. */
  body: string
  /** Date.now() when the body had arrived. */
  at: number
}

/** Returns the response to the n-th request (0-based), or `hold` to send none. */
export type Responder = (request: ReceivedRequest, index: number) => { status: number, headers?: Record<string, string> } | 'hold'

export interface Receiver {
  url: string
  origin: string
  requests: ReceivedRequest[]
  /** Resolves once `count` requests have arrived. */
  waitFor: (count: number) => Promise<void>
  close: () => Promise<void>
}

const servers: Server[] = []

/** Starts an HTTP server on 127.0.0.1 that records requests and responds with `respond`. */
export async function startReceiver (respond: Responder = () => ({ status: 204 })): Promise<Receiver> {
  const requests: ReceivedRequest[] = []
  const waiters: Array<{ count: number, resolve: () => void }> = []

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const request: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() }
      requests.push(request)
      for (const waiter of waiters.filter((candidate) => requests.length >= candidate.count)) {
        waiter.resolve()
      }
      const response = respond(request, requests.length - 1)
      if (response !== 'hold') {
        res.writeHead(response.status, response.headers).end()
      }
    })
  })
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  const origin = `http://127.0.0.1:${port}`

  return {
    url: `${origin}/hooks/emdx`,
    origin,
    requests,
    waitFor: async (count) => {
      if (requests.length >= count) {
        return
      }
      await new Promise<void>((resolve) => waiters.push({ count, resolve }))
    },
    close: async () => await closeServer(server)
  }
}

/** Returns a loopback URL on a port where nothing listens. */
export async function deadUrl (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await closeServer(server)
  return `http://127.0.0.1:${port}/hooks/emdx`
}

async function closeServer (server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    if (server.listening) {
      await closeServer(server)
    }
  }
})
