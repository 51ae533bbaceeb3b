import path from 'node:path'
import { CapacityLeases } from '../../src/stage/leases.js'
import { ExecutorService } from '../../src/stage/executor-service.js'
import { ReplayGuard } from '../../src/stage/replay-guard.js'
import { silentLogger } from '../../src/node/logger.js'
import type { ExecutorServiceInit } from '../../src/stage/executor-service.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { RemoteStageContext } from '../../src/stage/requester.js'
import type { RunnerProgress, RunnerResult, RunnerSpec, StageRunner } from '../../src/stage/runner.js'

/** Starts the executor side of the stage protocol on a node. */
export async function startExecutorService (node: EmdxNode, runner: StageRunner, overrides: Partial<ExecutorServiceInit> = {}): Promise<{ service: ExecutorService, leases: CapacityLeases }> {
  const leases = overrides.leases ?? new CapacityLeases({ cpus: 2, memoryBytes: 2 * 1024 ** 3 })
  const service = new ExecutorService({
    libp2p: node.libp2p,
    logger: silentLogger(),
    runner,
    leases,
    replay: await ReplayGuard.open(node.database),
    signer: node.signer,
    encryptionKey: node.encryptionKey,
    price: () => ({ perCpuSecond: 10, perGibSecond: 2, perThousandTokens: 5 }),
    images: ['emdx-test:latest'],
    agents: ['claude'],
    ledger: node.ledger,
    credit: { trust: node.reputation },
    workDir: path.join(node.config.dataDir, 'jobs'),
    ...overrides
  })
  await service.start()
  return { service, leases }
}

export function requesterContext (node: EmdxNode): RemoteStageContext {
  return { libp2p: node.libp2p, signer: node.signer, encryptionKey: node.encryptionKey, logger: silentLogger(), ledger: node.ledger }
}

/**
 * A runner that answers from a script, for protocol tests that are not
 * about the sandbox: `behave` decides the result of each spec.
 */
export class ScriptedRunner implements StageRunner {
  readonly specs: RunnerSpec[] = []
  private readonly behave: (spec: RunnerSpec) => Promise<RunnerResult>

  constructor (behave: (spec: RunnerSpec) => Promise<RunnerResult>) {
    this.behave = behave
  }

  async start (spec: RunnerSpec): Promise<{ progress: AsyncIterable<RunnerProgress>, result: Promise<RunnerResult> }> {
    this.specs.push(spec)
    const result = this.behave(spec)
    async function * progress (): AsyncIterable<RunnerProgress> {
      yield { type: 'state', state: 'running' }
      await result.catch(() => {})
      yield { type: 'state', state: 'finished' }
    }
    return { progress: progress(), result }
  }
}

export function succeeded (stdout: string, changes: Partial<RunnerResult> = {}): RunnerResult {
  return {
    outcome: 'succeeded',
    exitCode: 0,
    stdout,
    stdoutTruncated: false,
    message: 'the stage exited with code 0',
    metrics: { cpuSeconds: 0.5, wallTimeMs: 800, peakMemoryBytes: 64 * 1024 ** 2 },
    ...changes
  }
}
