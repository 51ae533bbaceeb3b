import { startSharedNode, stopTestNode, waitFor } from './nodes.js'
import { ScriptedRunner, succeeded } from './stage.js'
import type { CapacityResponse } from '../../src/api/capacity-routes.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { RunnerResult, RunnerSpec } from '../../src/stage/runner.js'

/**
 * Holds stages until the test lets them through, one `release` each, so a
 * test can watch a cascade stand still at each stage. A stage whose run is
 * cancelled stops waiting.
 */
export class StageGate {
  private permits = 0
  private readonly waiters: Array<() => void> = []
  /** Stages that reached the gate so far. */
  arrivals = 0

  async pass (signal?: AbortSignal): Promise<void> {
    this.arrivals++
    if (this.permits > 0) {
      this.permits--
      return
    }
    await new Promise<void>(resolve => {
      this.waiters.push(resolve)
      signal?.addEventListener('abort', () => { resolve() }, { once: true })
    })
  }

  /** Lets the next waiting stage through, or the next one to arrive. */
  release (): void {
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.permits++
    } else {
      waiter()
    }
  }

  /** Lets every stage through from now on, so nodes can stop. */
  openForever (): void {
    this.permits = Number.MAX_SAFE_INTEGER
    for (const waiter of this.waiters.splice(0)) {
      waiter()
    }
  }
}

/** Returns the result of an agent stage: a short document and token usage, as Claude Code reports them. */
export function agentAnswer (spec: RunnerSpec): RunnerResult {
  const text = `Scripted answer to a prompt of ${spec.agent?.prompt.length ?? 0} characters.`
  return succeeded(text, { agent: { output: text, isError: false, usage: { inputTokens: 120, outputTokens: 40, costUsd: 0 } } })
}

export interface StageNetwork {
  nodes: EmdxNode[]
  gate: StageGate
  stop: () => Promise<void>
}

/** Agents need a model endpoint to be offered; the scripted runner never calls it. */
const UNUSED_MODEL_URL = 'http://127.0.0.1:9'

/** Returns `agentAnswer` for an agent stage, and its command line as the output of a command stage. */
export function defaultAnswer (spec: RunnerSpec): RunnerResult {
  return spec.agent === undefined ? succeeded(`ran ${spec.command?.join(' ') ?? ''}`) : agentAnswer(spec)
}

export interface StageNetworkOptions {
  /** The result of each stage once the gate lets it through; `defaultAnswer` when missing. */
  answer?: (spec: RunnerSpec) => RunnerResult
}

/**
 * Starts `count` real nodes on loopback whose runners return scripted
 * results for agent and command stages, behind one gate. Node 0 is the
 * bootstrap peer. Resolves once every node is connected to the others and
 * node 0 has the other nodes' capacity.
 */
export async function startStageNetwork (count: number, options: StageNetworkOptions = {}): Promise<StageNetwork> {
  const gate = new StageGate()
  const answer = options.answer ?? defaultAnswer
  const runner = (): ScriptedRunner => new ScriptedRunner(async (spec) => {
    await gate.pass(spec.signal)
    if (spec.signal?.aborted === true) {
      return { ...succeeded(''), outcome: 'cancelled', exitCode: null, message: 'the stage was cancelled' }
    }
    return answer(spec)
  })
  // Scripted runners cannot run canaries, and these networks are not about trust.
  const extras = { runner: runner(), advertiserTiming: { debounceMs: 100, retryMs: 200 }, spotChecks: { probationChecks: 0 } }

  const nodes: EmdxNode[] = []
  const stop = async (): Promise<void> => {
    gate.openForever()
    await Promise.all(nodes.map(async node => { await stopTestNode(node) }))
  }
  try {
    nodes.push(await startSharedNode({ agentBaseUrl: UNUSED_MODEL_URL, spotCheckShare: '0' }, extras))
    const bootstrap = nodes[0]?.addresses() ?? []
    for (let index = 1; index < count; index++) {
      nodes.push(await startSharedNode({ agentBaseUrl: UNUSED_MODEL_URL, spotCheckShare: '0', bootstrap }, { ...extras, runner: runner() }))
    }
    await waitFor(() => nodes.every(node => node.libp2p.getPeers().length === count - 1), 30_000, `every node to connect to the other ${count - 1}`)
    await waitFor(async () => {
      const seen = await (await fetch(`${nodes[0]?.api.url ?? ''}/api/v1/capacity?refresh=1`)).json() as CapacityResponse
      return seen.network.providers.length === count - 1
    }, 30_000, 'node 0 to see the capacity of the others')
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, gate, stop }
}
