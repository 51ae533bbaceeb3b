import { z } from 'zod'
import { parseSize } from '../node/units.js'
import { newJobId } from '../stage/requester.js'
import type { StageDispatcher } from '../stage/dispatcher.js'
import type { StageResultPayload } from '../stage/messages.js'
import type { StageRunner } from '../stage/runner.js'
import type { ApiApp } from './server.js'

export interface RunRouteSource {
  dispatcher: StageDispatcher
  /** This node's sandbox, for local runs; undefined without one. */
  runner?: StageRunner
  images: string[]
}

/** The body of `POST /api/v1/run`: one command stage. */
export const runBodySchema = z.strictObject({
  command: z.array(z.string().max(4096)).min(1).max(256),
  remote: z.boolean().optional(),
  image: z.string().min(1).max(128).optional(),
  timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  cpus: z.number().min(0.1).max(64).optional(),
  memory: z.union([z.string(), z.number().int().positive()]).optional(),
  maxCredits: z.number().int().positive().max(1e12).optional()
})

/** One line of the NDJSON response of `POST /api/v1/run`. */
export type RunLine =
  | { type: 'searching', attempt: number }
  | { type: 'dispatched', provider: string, jobId: string }
  | { type: 'running', provider: string }
  | { type: 'output', stream: 'stdout' | 'stderr', line: string }
  | { type: 'retrying', provider?: string, reason: string, delayMs: number }
  | { type: 'result', provider: string, result: StageResultPayload, credits?: number }
  | { type: 'error', message: string }

const DEFAULT_TIMEOUT_SECONDS = 300
const DEFAULT_MAX_CREDITS = 50_000

/**
 * `POST /api/v1/run`: runs one command stage on another node (`remote:
 * true`) or in this node's sandbox, and streams what happens as JSON lines,
 * ending with a `result` or an `error` line.
 */
export function registerRunRoutes (app: ApiApp, source: RunRouteSource): void {
  app.post('/api/v1/run', async (request, reply) => {
    const parsed = runBodySchema.safeParse(request.body)
    if (!parsed.success) {
      return await reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `invalid run request: ${z.prettifyError(parsed.error)}` })
    }
    const body = parsed.data
    const memoryBytes = typeof body.memory === 'string' ? parseSize(body.memory) : (body.memory ?? 256 * 1024 ** 2)
    if (memoryBytes === undefined) {
      return await reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `invalid memory ${JSON.stringify(body.memory)}: expected a size such as 512m` })
    }
    if (body.remote !== true && source.runner === undefined) {
      return await reply.code(409).send({ statusCode: 409, error: 'Conflict', message: 'this node has no sandbox; pass --remote p2p to run the command on another node' })
    }

    reply.hijack()
    const response = reply.raw
    response.writeHead(200, { 'content-type': 'application/x-ndjson' })
    const write = (line: RunLine): void => { response.write(`${JSON.stringify(line)}\n`) }
    const controller = new AbortController()
    // The response's close, not the request's: Node.js closes a request as soon as its body is read.
    response.on('close', () => { if (!response.writableFinished) controller.abort(new Error('the client went away')) })

    const stage = { command: body.command, image: body.image, timeoutMs: (body.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000, cpus: body.cpus ?? 1, memoryBytes, maxCredits: body.maxCredits ?? DEFAULT_MAX_CREDITS }
    try {
      if (body.remote === true) {
        await runRemote(source.dispatcher, stage, write, controller.signal)
      } else {
        await runLocal(source.runner as StageRunner, stage, write, controller.signal)
      }
    } catch (err) {
      write({ type: 'error', message: (err as Error).message })
    }
    response.end()
  })
}

interface CommandStage {
  command: string[]
  image?: string
  timeoutMs: number
  cpus: number
  memoryBytes: number
  maxCredits: number
}

async function runRemote (dispatcher: StageDispatcher, stage: CommandStage, write: (line: RunLine) => void, signal: AbortSignal): Promise<void> {
  const needs = { cpus: stage.cpus, memoryBytes: stage.memoryBytes, image: stage.image }
  const outcome = await dispatcher.dispatch({
    kind: 'command',
    stage: 'command',
    payload: { kind: 'command', command: stage.command, image: stage.image },
    needs,
    timeoutMs: stage.timeoutMs,
    maxCredits: stage.maxCredits
  }, needs, {
    signal,
    onEvent: (event) => {
      switch (event.type) {
        case 'searching': write({ type: 'searching', attempt: event.attempt }); break
        case 'dispatched': write({ type: 'dispatched', provider: event.provider, jobId: event.jobId }); break
        case 'accepted': write({ type: 'running', provider: event.provider }); break
        case 'progress': event.progress.lines.forEach(line => { write({ type: 'output', stream: line.stream, line: line.line }) }); break
        case 'retrying': write({ type: 'retrying', provider: event.provider, reason: event.reason, delayMs: event.delayMs }); break
      }
    }
  })
  write({ type: 'result', provider: outcome.executor, result: outcome.result, credits: outcome.receiptBody.credits })
}

async function runLocal (runner: StageRunner, stage: CommandStage, write: (line: RunLine) => void, signal: AbortSignal): Promise<void> {
  const run = await runner.start({
    jobId: newJobId(),
    command: stage.command,
    image: stage.image,
    limits: { timeoutMs: stage.timeoutMs, cpus: stage.cpus, memoryBytes: stage.memoryBytes },
    signal
  })
  write({ type: 'running', provider: 'local' })
  for await (const event of run.progress) {
    if (event.type === 'log') {
      write({ type: 'output', stream: event.stream, line: event.line })
    }
  }
  const result = await run.result
  write({
    type: 'result',
    provider: 'local',
    result: {
      outcome: result.outcome,
      exitCode: result.exitCode,
      stdout: result.stdout,
      stdoutTruncated: result.stdoutTruncated,
      message: result.message,
      metrics: result.metrics
    }
  })
}
