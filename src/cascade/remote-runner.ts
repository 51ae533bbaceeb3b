import type { StageDispatcher } from '../stage/dispatcher.js'
import type { StageResultPayload } from '../stage/messages.js'
import type { TransformHooks, TransformRequest, TransformResult, TransformRunner } from './pipeline.js'

/** The agent providers are asked for; the only one the network offers today. */
export const CASCADE_AGENT = 'claude'

/**
 * Refuses results that are not a finished agent answer: a failed or timed
 * out run, an agent that reported an error, or an empty output. Such a
 * result is not paid for, and the stage moves to another provider.
 */
export function judgeAgentResult (result: StageResultPayload): string | undefined {
  if (result.outcome !== 'succeeded') {
    return `the stage ended ${result.outcome.replace('_', ' ')}: ${result.message}`
  }
  if (result.agent === undefined) {
    return 'the executor returned no agent result'
  }
  if (result.agent.isError) {
    return `the agent reported an error: ${result.agent.output.slice(0, 200)}`
  }
  if (result.agent.output.trim() === '') {
    return 'the agent returned an empty output'
  }
  return undefined
}

/** Runs cascade transforms on other nodes through the stage dispatcher. */
export class RemoteTransformRunner implements TransformRunner {
  private readonly dispatcher: StageDispatcher

  constructor (dispatcher: StageDispatcher) {
    this.dispatcher = dispatcher
  }

  async run (request: TransformRequest, hooks: TransformHooks): Promise<TransformResult> {
    const needs = { cpus: request.cpus, memoryBytes: request.memoryBytes, agent: CASCADE_AGENT }
    const outcome = await this.dispatcher.dispatch({
      kind: 'agent',
      stage: `${request.from}-${request.to}`,
      payload: { kind: 'agent', prompt: request.prompt, model: request.model, repository: request.repository },
      needs,
      timeoutMs: request.timeoutMs,
      maxCredits: request.maxCredits
    }, needs, {
      signal: hooks.signal,
      onEvent: hooks.onEvent,
      beforeOffer: hooks.beforeOffer,
      judgeResult: judgeAgentResult,
      onResult: hooks.onResult
    })

    return {
      output: outcome.result.agent?.output ?? outcome.result.stdout,
      jobId: outcome.jobId,
      provider: outcome.executor,
      credits: outcome.receiptBody.credits,
      bundle: outcome.result.bundle
    }
  }
}
