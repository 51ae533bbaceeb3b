import { createServer } from 'node:http'
import path from 'node:path/posix'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../node/logger.js'

/**
 * A scripted stand-in for the Anthropic Messages API, so that a real agent
 * CLI can run a whole turn without the internet. Its first reply is a call
 * of the agent's Write tool, and its reply after the tool result is a final
 * text. Everything it writes is labelled as stand-in output, so that nobody
 * mistakes it for a model's work.
 */
export const STAND_IN_LABEL = '[emdx stand-in model]'

/** File the stand-in tells the agent to write, relative to the agent's working directory. */
export const STAND_IN_FILE_NAME = 'STAND-IN.md'

export interface MessagesApiStandInInit {
  logger: Logger
  /** Loopback address to listen on; 127.0.0.1 by default. */
  host?: string
  /** 0 picks a free port. */
  port?: number
  /**
   * When set, requests must carry this key in `x-api-key`; others get 401.
   * The key is compared, never stored in a log line.
   */
  expectedApiKey?: string
  /** Wait this long before each reply, so that a stage runs long enough for tests to act during it. */
  replyDelayMs?: number
}

/** One request the stand-in served; tests read these. */
export interface StandInRequest {
  method: string
  path: string
  /** Whether `x-api-key` matched `expectedApiKey` (true when none is expected). */
  apiKeyAccepted: boolean
  /** The reply sent: a Write tool call, the final text, or an error. */
  reply: 'tool_use' | 'text' | 'error' | 'none'
}

export interface MessagesApiStandIn {
  url: string
  port: number
  requests: StandInRequest[]
  close: () => Promise<void>
}

/** Maximum request body; the Claude Code CLI sends about 115 KB per turn. */
const MAX_BODY_BYTES = 16 * 1024 * 1024

interface ContentBlock {
  type: string
  [key: string]: unknown
}

interface MessagesRequest {
  model?: unknown
  stream?: unknown
  system?: unknown
  messages?: unknown
}

/** Starts the stand-in on loopback and resolves once it listens. */
export async function startMessagesApiStandIn (init: MessagesApiStandInInit): Promise<MessagesApiStandIn> {
  const logger = init.logger.child({ component: 'stand-in' })
  const requests: StandInRequest[] = []
  const server = createServer((request, response) => {
    handleRequest(request, response, init, requests).catch((err: unknown) => {
      logger.warn({ err, path: request.url }, 'stand-in request failed')
      if (!response.headersSent) {
        response.writeHead(500)
      }
      response.end()
    })
  })

  await listen(server, init.host ?? '127.0.0.1', init.port ?? 0)
  const port = (server.address() as AddressInfo).port
  const url = `http://${init.host ?? '127.0.0.1'}:${port}`
  logger.info({ url }, 'Messages API stand-in listening')

  return {
    url,
    port,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

async function listen (server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

async function handleRequest (request: IncomingMessage, response: ServerResponse, init: MessagesApiStandInInit, requests: StandInRequest[]): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://stand-in')
  const apiKeyAccepted = init.expectedApiKey === undefined || request.headers['x-api-key'] === init.expectedApiKey
  const record: StandInRequest = { method: request.method ?? '', path: url.pathname, apiKeyAccepted, reply: 'none' }
  requests.push(record)

  if (request.method === 'HEAD' || (request.method === 'GET' && url.pathname === '/')) {
    response.writeHead(200, { 'content-type': 'text/plain' })
    response.end()
    return
  }
  if (request.method !== 'POST' || url.pathname !== '/v1/messages') {
    sendError(response, 404, 'not_found_error', `the stand-in serves only POST /v1/messages, not ${request.method ?? ''} ${url.pathname}`)
    record.reply = 'error'
    return
  }
  if (!apiKeyAccepted) {
    sendError(response, 401, 'authentication_error', 'invalid x-api-key')
    record.reply = 'error'
    return
  }

  const body = parseBody(await readBody(request))
  if (body === undefined) {
    sendError(response, 400, 'invalid_request_error', 'the request body is not a JSON object')
    record.reply = 'error'
    return
  }

  const model = typeof body.model === 'string' ? body.model : 'stand-in'
  const content = hasToolResult(body.messages)
    ? [{ type: 'text', text: finalText(body.messages) }]
    : [writeToolCall(workingDirectory(body.system))]
  if (init.replyDelayMs !== undefined && init.replyDelayMs > 0) {
    await new Promise(resolve => setTimeout(resolve, init.replyDelayMs))
  }
  record.reply = content[0]?.type === 'tool_use' ? 'tool_use' : 'text'

  if (body.stream === true) {
    sendEventStream(response, model, content)
  } else {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.end(JSON.stringify(message(model, content, stopReason(content))))
  }
}

/**
 * The scripted final answer: the label, what was done, and the start of the
 * request it answers, so that each stage's document shows which request it
 * came from.
 */
function finalText (messages: unknown): string {
  const request = firstUserText(messages).split('\n').map(line => line.trim()).find(line => line !== '') ?? ''
  const excerpt = request.length > 160 ? `${request.slice(0, 157)}...` : request
  return `${STAND_IN_LABEL} Wrote ${STAND_IN_FILE_NAME} as scripted. This text is not model output.\n\nThe request began: ${excerpt}`
}

function firstUserText (messages: unknown): string {
  if (!Array.isArray(messages)) {
    return ''
  }
  const first = messages.find((entry: { role?: unknown }) => entry?.role === 'user') as { content?: unknown } | undefined
  if (typeof first?.content === 'string') {
    return first.content
  }
  if (Array.isArray(first?.content)) {
    // The agent may put reminders before the prompt; the prompt is the last text block.
    const blocks = first.content.filter((part: { type?: unknown, text?: unknown }) => part?.type === 'text' && typeof part.text === 'string') as Array<{ text: string }>
    return blocks[blocks.length - 1]?.text ?? ''
  }
  return ''
}

async function readBody (request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES) {
      throw new Error(`request body larger than ${MAX_BODY_BYTES} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function parseBody (text: string): MessagesRequest | undefined {
  try {
    const parsed: unknown = JSON.parse(text)
    return parsed != null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as MessagesRequest : undefined
  } catch {
    return undefined
  }
}

/** True once the conversation carries the result of the Write call, so the next reply is the final text. */
function hasToolResult (messages: unknown): boolean {
  if (!Array.isArray(messages)) {
    return false
  }
  return messages.some((entry: { content?: unknown }) =>
    Array.isArray(entry?.content) && (entry.content as ContentBlock[]).some(block => block?.type === 'tool_result'))
}

/**
 * Finds the agent's working directory in its system prompt, where the Claude
 * Code CLI 2.1 states it as "Primary working directory: /path". The Write
 * tool needs an absolute path.
 */
function workingDirectory (system: unknown): string {
  const text = typeof system === 'string' ? system : JSON.stringify(system ?? '')
  const match = /[Ww]orking directory: (\/[^\s"\\]*)/.exec(text)
  return match?.[1] ?? '/workspace'
}

function writeToolCall (directory: string): ContentBlock {
  return {
    type: 'tool_use',
    id: `toolu_standin_${Date.now()}`,
    name: 'Write',
    input: {
      file_path: path.join(directory, STAND_IN_FILE_NAME),
      content: `${STAND_IN_LABEL} This file was written by the agent at the request of a scripted stand-in, not a model.\n`
    }
  }
}

function stopReason (content: ContentBlock[]): string {
  return content.some(block => block.type === 'tool_use') ? 'tool_use' : 'end_turn'
}

const usage = { input_tokens: 120, output_tokens: 30, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 }

function message (model: string, content: ContentBlock[], stop: string | null): Record<string, unknown> {
  return {
    id: `msg_standin_${Date.now()}`,
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: stop,
    stop_sequence: null,
    usage
  }
}

/** Sends the reply as the Messages API's server-sent event stream. */
function sendEventStream (response: ServerResponse, model: string, content: ContentBlock[]): void {
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  const send = (type: string, data: Record<string, unknown>): void => {
    response.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`)
  }

  send('message_start', { message: { ...message(model, [], null), usage: { ...usage, output_tokens: 1 } } })
  content.forEach((block, index) => {
    if (block.type === 'tool_use') {
      send('content_block_start', { index, content_block: { ...block, input: {} } })
      send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } })
    } else {
      send('content_block_start', { index, content_block: { type: 'text', text: '' } })
      send('content_block_delta', { index, delta: { type: 'text_delta', text: block.text } })
    }
    send('content_block_stop', { index })
  })
  send('message_delta', { delta: { stop_reason: stopReason(content), stop_sequence: null }, usage: { output_tokens: usage.output_tokens } })
  send('message_stop', {})
  response.end()
}

function sendError (response: ServerResponse, status: number, type: string, text: string): void {
  response.writeHead(status, { 'content-type': 'application/json' })
  response.end(JSON.stringify({ type: 'error', error: { type, message: `${STAND_IN_LABEL} ${text}` } }))
}
