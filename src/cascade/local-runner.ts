import { summarizeAgentLine } from '../stage/agent-progress.js'
import { newJobId } from '../stage/requester.js'
import { judgeAgentResult } from './remote-runner.js'
import type { StageRunner } from '../stage/runner.js'
import type { TransformHooks, TransformRequest, TransformResult, TransformRunner } from './pipeline.js'

/** The failure of a transform run in this node's own sandbox. */
export class LocalStageError extends Error {}

/**
 * Runs cascade transforms in this node's own sandbox: the same agent and
 * the same checks as on the network, with no provider, offer or receipt.
 */
export class LocalTransformRunner implements TransformRunner {
  private readonly runner: StageRunner

  constructor (runner: StageRunner) {
    this.runner = runner
  }

  async run (request: TransformRequest, hooks: TransformHooks): Promise<TransformResult> {
    const jobId = newJobId()
    await hooks.beforeOffer(jobId, 'local')
    hooks.onEvent({ type: 'accepted', provider: 'local', jobId, accept: { type: 'accept', jobId, price: { perCpuSecond: 0, perGibSecond: 0, perThousandTokens: 0 }, heartbeatMs: 1000, leaseMs: 1000 } })

    const run = await this.runner.start({
      jobId,
      agent: { prompt: request.prompt, model: request.model },
      repository: request.repository,
      limits: { timeoutMs: request.timeoutMs, cpus: request.cpus, memoryBytes: request.memoryBytes },
      signal: hooks.signal
    })
    for await (const event of run.progress) {
      const line = event.type !== 'log' ? undefined : (event.stream === 'stdout' ? summarizeAgentLine(event.line) : event.line)
      if (event.type === 'log' && line !== undefined) {
        hooks.onEvent({ type: 'progress', provider: 'local', jobId, progress: { type: 'progress', lines: [{ stream: event.stream, line }], dropped: 0 } })
      }
    }
    const result = await run.result

    const refusal = judgeAgentResult({ ...result, agent: result.agent === undefined ? undefined : { output: result.agent.output, isError: result.agent.isError, inputTokens: 0, outputTokens: 0, costUsd: 0 } })
    if (refusal !== undefined) {
      throw new LocalStageError(`the stage failed in this node's sandbox: ${refusal}`)
    }
    return { output: result.agent?.output ?? result.stdout, jobId, provider: 'local', bundle: result.bundle }
  }
}
