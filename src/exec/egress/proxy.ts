import { createServer, request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { rm } from 'node:fs/promises'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../../node/logger.js'

/** Counters of the egress proxy, for status and tests. */
export interface EgressStats {
  allowed: number
  rejected: number
}

/**
 * The node's egress proxy for agents: an HTTP proxy on a unix socket that a
 * relay exposes inside each agent sandbox. It forwards CONNECT tunnels (for
 * HTTPS) and plain HTTP requests only to the `host:port` pairs of its
 * allow-list. It rejects everything else with 403 and counts each rejection.
 */
export class EgressProxy {
  readonly socketPath: string
  readonly stats: EgressStats = { allowed: 0, rejected: 0 }
  private readonly allowed: Set<string>
  private readonly logger: Logger
  private server?: Server

  constructor (socketPath: string, allowed: string[], logger: Logger) {
    this.socketPath = socketPath
    this.allowed = new Set(allowed.map(entry => entry.toLowerCase()))
    this.logger = logger
  }

  get enabled (): boolean {
    return this.allowed.size > 0
  }

  async start (): Promise<void> {
    await rm(this.socketPath, { force: true })
    const server = createServer((request, response) => { this.forwardRequest(request, response) })
    // A sandbox killed mid-request resets its connections; that is no error of the node.
    server.on('clientError', (_err, socket: Duplex) => { socket.destroy() })
    server.on('connect', (request: IncomingMessage, socket: Duplex, head: Buffer) => { this.openTunnel(request, socket, head) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.socketPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    this.logger.info({ socket: this.socketPath, allowed: [...this.allowed] }, 'egress proxy started')
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === undefined) {
      return
    }
    this.server = undefined
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    await rm(this.socketPath, { force: true })
  }

  private isAllowed (host: string, port: number): boolean {
    const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
    return this.allowed.has(`${bare}:${port}`) || this.allowed.has(`[${bare}]:${port}`)
  }

  private reject (target: string, kind: string): void {
    this.stats.rejected++
    this.logger.warn({ target, kind, rejected: this.stats.rejected }, 'egress rejected: target not on the allow-list')
  }

  private openTunnel (request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const target = request.url ?? ''
    const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target)
    const host = match?.[1] ?? ''
    const port = Number(match?.[2])
    if (match == null || !this.isAllowed(host, port)) {
      this.reject(target, 'connect')
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n')
      return
    }

    this.stats.allowed++
    const upstream = connect({ host: host.replace(/^\[(.*)\]$/, '$1'), port })
    upstream.once('connect', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(socket)
      socket.pipe(upstream)
    })
    const close = (err?: Error): void => {
      if (err !== undefined) {
        this.logger.warn({ err, target }, 'egress tunnel failed')
      }
      upstream.destroy()
      socket.destroy()
    }
    upstream.once('error', close)
    socket.once('error', close)
  }

  private forwardRequest (request: IncomingMessage, response: ServerResponse): void {
    let url: URL
    try {
      url = new URL(request.url ?? '')
    } catch {
      this.reject(request.url ?? '', 'origin-form request')
      response.writeHead(400).end()
      return
    }
    const port = Number(url.port === '' ? 80 : url.port)
    if (url.protocol !== 'http:' || !this.isAllowed(url.hostname, port)) {
      this.reject(`${url.hostname}:${port}`, 'http')
      response.writeHead(403, { 'content-type': 'text/plain' }).end('egress rejected: target not on the allow-list\n')
      return
    }

    this.stats.allowed++
    const headers = { ...request.headers }
    delete headers['proxy-connection']
    delete headers['proxy-authorization']
    const upstream = httpRequest({ host: url.hostname, port, method: request.method, path: `${url.pathname}${url.search}`, headers }, (reply) => {
      response.writeHead(reply.statusCode ?? 502, reply.headers)
      reply.pipe(response)
      reply.once('error', () => { response.destroy() })
    })
    request.once('error', () => { upstream.destroy() })
    response.once('error', () => { upstream.destroy() })
    upstream.once('error', (err) => {
      this.logger.warn({ err, target: `${url.hostname}:${port}` }, 'egress request failed')
      if (!response.headersSent) {
        response.writeHead(502)
      }
      response.end()
    })
    request.pipe(upstream)
  }
}
