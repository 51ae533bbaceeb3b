import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startTestNode, waitFor } from './nodes.js'
import { ScriptedRunner, succeeded } from './stage.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { DispatchOptions } from '../../src/stage/dispatcher.js'
import type { RemoteStageOutcome, RemoteStageTask } from '../../src/stage/requester.js'
import type { RunnerResult, RunnerSpec } from '../../src/stage/runner.js'
import type { TestNodeOptions } from './nodes.js'

const run = promisify(execFile)

/**
 * Runs a command stage's argv on this machine, as the test's stand-in for a
 * sandbox: the commands are the tests' own (canaries and echo lines).
 */
export async function runOnHost (spec: RunnerSpec): Promise<RunnerResult> {
  const [file, ...args] = spec.command ?? []
  if (file === undefined) {
    throw new Error('the command stage has no command')
  }
  const { stdout } = await run(file, args, { timeout: 30_000, maxBuffer: 1024 * 1024 })
  return succeeded(stdout)
}

/** Answers an agent stage with a fixed text naming its prompt, as a model stand-in would. */
export function answerAgent (spec: RunnerSpec, label: string): RunnerResult {
  return succeeded('', {
    agent: {
      output: `${label} answered: ${spec.agent?.prompt ?? ''}`,
      isError: false,
      usage: { inputTokens: 1000, outputTokens: 500, costUsd: 0 }
    }
  })
}

/** Creates a runner that runs every stage honestly. */
export function honestRunner (label = 'honest'): ScriptedRunner {
  return new ScriptedRunner(async spec => spec.command === undefined ? answerAgent(spec, label) : await runOnHost(spec))
}

/**
 * Creates a runner built to cheat: it runs agent stages, but returns
 * garbage in place of running any command whose text contains `pattern`.
 */
export function cheatingRunner (pattern: string): ScriptedRunner {
  return new ScriptedRunner(async spec => {
    if (spec.command === undefined) {
      return answerAgent(spec, 'cheater')
    }
    if (spec.command.join(' ').includes(pattern)) {
      return succeeded('0000000000000000000000000000000000000000000000000000000000000000  -\n')
    }
    return await runOnHost(spec)
  })
}

/** Starts a node that shares through the runner, on loopback, bootstrapped to `bootstrap`. */
export async function startProvider (runner: ScriptedRunner, bootstrap: EmdxNode | undefined, settings: TestNodeOptions = {}): Promise<EmdxNode> {
  // The base URL only makes the node offer agents, because the scripted runner runs them.
  return await startTestNode({ shareCpu: '1', shareMem: '1g', agentBaseUrl: 'http://127.0.0.1:9', ...settings, bootstrap: bootstrap?.addresses() ?? [] }, { runner, advertiserTiming: { debounceMs: 50, retryMs: 100 } })
}

/** Waits until the node's discovery finds `count` providers of command stages. */
export async function waitForProviders (node: EmdxNode, count: number): Promise<void> {
  await waitFor(async () => {
    const found = await node.discovery.find({ cpus: 1, memoryBytes: 128 * 1024 ** 2 }, { count, signal: AbortSignal.timeout(5000) })
    return found.length >= count
  }, 60_000, `${count} providers to be discoverable`)
}

export const AGENT_NEEDS = { cpus: 1, memoryBytes: 256 * 1024 ** 2, agent: 'claude' }
export const COMMAND_NEEDS = { cpus: 1, memoryBytes: 128 * 1024 ** 2 }

/** Sends one stage through the node's dispatcher, with a 30 s stage timeout and at most 5 credits. */
async function dispatchStage (node: EmdxNode, task: Pick<RemoteStageTask, 'kind' | 'stage' | 'payload' | 'needs'>, options: DispatchOptions): Promise<RemoteStageOutcome> {
  return await node.requesting.dispatcher.dispatch({ ...task, timeoutMs: 30_000, maxCredits: 5_000 }, task.needs, { signal: AbortSignal.timeout(60_000), ...options })
}

export async function dispatchAgentStage (node: EmdxNode, prompt: string, options: DispatchOptions = {}): Promise<RemoteStageOutcome> {
  return await dispatchStage(node, { kind: 'agent', stage: 'idea-prompt', payload: { kind: 'agent', prompt }, needs: AGENT_NEEDS }, options)
}

export async function dispatchCommandStage (node: EmdxNode, command: string[], options: DispatchOptions = {}): Promise<RemoteStageOutcome> {
  return await dispatchStage(node, { kind: 'command', stage: 'command', payload: { kind: 'command', command }, needs: COMMAND_NEEDS }, options)
}
