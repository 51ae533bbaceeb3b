import path from 'node:path'
import { CapacityAdvertiser } from '../dht/advertiser.js'
import { serveCapacity } from '../dht/capacity-protocol.js'
import { ExecutorService } from '../stage/executor-service.js'
import { CapacityLeases } from '../stage/leases.js'
import { reportLostJobs, RunningJobs } from '../stage/lost-jobs.js'
import { serveReceiptDelivery } from '../stage/receipt-delivery.js'
import { ReplayGuard } from '../stage/replay-guard.js'
import { textSublevel } from './data-dir.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { Ledger } from '../credits/ledger.js'
import type { AdvertiserTiming, CapacitySnapshot } from '../dht/advertiser.js'
import type { CapacityRecord, Isolation, Runtime } from '../dht/capacity-record.js'
import type { SandboxInfo } from '../exec/types.js'
import type { Signer } from '../records/signature.js'
import type { Reputation } from '../reputation/reputation.js'
import type { JobRegistry } from '../stage/job-registry.js'
import type { StageRunner } from '../stage/runner.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EncryptionKeyPair } from './identity.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { StopStep } from './network-parts.js'

/** The current capacity of this node and a way to hear when it changes. */
export interface CapacitySource {
  snapshot: () => CapacitySnapshot | undefined
  onChange: (listener: () => void) => void
}

/** The agent a sharing node offers when it has a way to reach a model. */
export const OFFERED_AGENT = 'claude'

export interface SharingInit {
  config: NodeConfig
  logger: Logger
  libp2p: EmdxLibp2p
  signer: Signer
  database: RootDatabase
  encryptionKey: EncryptionKeyPair
  ledger: Ledger
  reputation: Reputation
  /** Distrusts the forkers that the proofs name, stores the proofs and shares them with peers. */
  onForkProofs: (proofs: ForkProof[]) => void
  sandbox: SandboxInfo
  /** Runs stages in the sandbox; undefined when this node has no sandbox. */
  runner?: StageRunner
  /** A capacity to advertise in place of the sandbox's, for tests that run no stages. */
  capacity?: CapacitySource
  advertiserTiming?: Partial<AdvertiserTiming>
  /** Registry the executor reports the jobs it runs to. */
  jobs?: JobRegistry
}

export interface Sharing {
  leases?: CapacityLeases
  advertiser: CapacityAdvertiser
  executor?: ExecutorService
}

/**
 * Starts what a sharing node runs: the capacity leases, the stage protocol's
 * executor side and late receipt delivery (when there is a sandbox), and the
 * capacity advertising that announces it to requesters. Returns undefined
 * when the node shares nothing.
 */
export async function startSharing (init: SharingInit, stopSteps: StopStep[]): Promise<Sharing | undefined> {
  if (!init.config.share || (init.runner === undefined && init.capacity === undefined)) {
    return undefined
  }

  let leases: CapacityLeases | undefined
  let executor: ExecutorService | undefined
  let capacity = init.capacity
  if (init.runner !== undefined) {
    leases = new CapacityLeases({ cpus: init.config.shareCpu, memoryBytes: init.config.shareMem })
    const agents = offersAgent(init.config) ? [OFFERED_AGENT] : []
    executor = await startExecutorService(init, init.runner, leases, agents, stopSteps)
    capacity ??= leaseCapacity(init, leases, agents)
  }

  const advertiser = await startAdvertising(init, capacity as CapacitySource, stopSteps)
  return { leases, advertiser, executor }
}

/**
 * True when agents on this node can reach a model: the API key is in the
 * environment, or agents talk to a configured base URL such as a stand-in.
 */
export function offersAgent (config: NodeConfig): boolean {
  const key = process.env[config.agentApiKeyEnv]
  return (key !== undefined && key !== '') || config.agentBaseUrl !== undefined
}

async function startExecutorService (init: SharingInit, runner: StageRunner, leases: CapacityLeases, agents: string[], stopSteps: StopStep[]): Promise<ExecutorService> {
  const logger = init.logger.child({ component: 'executor' })
  // Read before the service takes jobs: what is recorded now was running when the node last stopped.
  const runningJobs = new RunningJobs(init.database, logger)
  const lost = await runningJobs.list()
  const service = new ExecutorService({
    libp2p: init.libp2p,
    logger,
    runner,
    leases,
    replay: await ReplayGuard.open(init.database),
    signer: init.signer,
    encryptionKey: init.encryptionKey,
    price: () => init.config.price,
    images: init.config.images.map(image => image.name),
    agents,
    ledger: init.ledger,
    credit: { trust: init.reputation, onForkProofs: init.onForkProofs },
    workDir: path.join(init.config.dataDir, 'jobs'),
    jobs: init.jobs,
    runningJobs
  })
  await service.start()
  stopSteps.push(async () => { await service.stop() })

  if (lost.length > 0) {
    logger.warn({ jobs: lost.map(job => job.jobId) }, 'jobs were running when this node last stopped; reporting them lost to their requesters')
    const stopReporting = new AbortController()
    const reporting = reportLostJobs(lost, { libp2p: init.libp2p, jobs: runningJobs, logger, signal: stopReporting.signal })
    stopSteps.push(async () => {
      stopReporting.abort()
      await reporting
    })
  }

  const stopDelivery = await serveReceiptDelivery({ libp2p: init.libp2p, ledger: init.ledger, logger })
  stopSteps.push(stopDelivery)
  return service
}

/** Builds the capacity a sandbox node advertises: its shared CPUs and memory less the leases taken. */
function leaseCapacity (init: SharingInit, leases: CapacityLeases, agents: string[]): CapacitySource {
  const runtime: { name: Runtime, isolation: Isolation } = {
    name: init.sandbox.runtime === 'none' ? 'bwrap' : init.sandbox.runtime,
    isolation: init.sandbox.isolation === 'none' ? 'namespaces' : init.sandbox.isolation
  }
  return {
    snapshot: () => {
      const free = leases.free()
      return {
        cpus: { free: free.cpus, total: leases.totalCpus },
        memory: { freeBytes: free.memoryBytes, totalBytes: leases.totalMemoryBytes },
        runtime,
        images: init.config.images.map(image => image.name),
        agents,
        arch: process.arch,
        price: init.config.price
      }
    },
    onChange: (listener) => { leases.onChange(listener) }
  }
}

const CAPACITY_SEQ_KEY = 'capacity-seq'

async function startAdvertising (init: SharingInit, capacity: CapacitySource, stopSteps: StopStep[]): Promise<CapacityAdvertiser> {
  const logger = init.logger.child({ component: 'advertiser' })
  const store = textSublevel(init.database, 'dht')
  const advertiser = new CapacityAdvertiser({
    libp2p: init.libp2p,
    signer: init.signer,
    logger,
    encryptionKey: init.encryptionKey.publicKey,
    capacity: () => capacity.snapshot(),
    receiptHead: () => receiptHead(init.ledger),
    loadSeq: async () => Number(await store.get(CAPACITY_SEQ_KEY) ?? 0),
    saveSeq: async (seq) => { await store.put(CAPACITY_SEQ_KEY, String(seq)) },
    timing: init.advertiserTiming
  })
  capacity.onChange(() => { advertiser.capacityChanged() })

  const stopServing = await serveCapacity({ libp2p: init.libp2p, logger, currentRecord: () => advertiser.currentRecord() })
  stopSteps.push(stopServing)
  await advertiser.start()
  stopSteps.push(async () => { await advertiser.stop() })
  return advertiser
}

function receiptHead (ledger: Ledger): CapacityRecord['receiptHead'] {
  const head = ledger.head()
  return head.seq < 0 ? null : { seq: head.seq, hash: head.hash }
}
