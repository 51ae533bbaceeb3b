import type { ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'

/**
 * Takes over a reply to stream server-sent events: writes the status and
 * headers and returns the raw response for the caller's `write` calls.
 */
export function openEventStream (reply: FastifyReply): ServerResponse {
  reply.hijack()
  const response = reply.raw
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive'
  })
  return response
}
