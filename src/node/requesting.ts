import path from 'node:path'
import { CascadeEvents } from '../cascade/events.js'
import { LocalTransformRunner } from '../cascade/local-runner.js'
import { CascadeService } from '../cascade/pipeline.js'
import { RemoteTransformRunner } from '../cascade/remote-runner.js'
import { CascadeStore } from '../cascade/store.js'
import { openKnowledgeBase } from '../knowledge/open.js'
import { SpotCheckPolicy } from '../reputation/spot-check.js'
import type { SpotCheckOptions } from '../reputation/spot-check.js'
import { StageDispatcher } from '../stage/dispatcher.js'
import { LostJobNotices, SentJobs } from '../stage/lost-jobs.js'
import { settleFromCheckpoint } from '../stage/receipt-delivery.js'
import { WebhookDispatcher } from '../webhooks/dispatcher.js'
import { loadWebhookSecret } from '../webhooks/secret.js'
import type { CascadeEvent } from '../cascade/events.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { Ledger } from '../credits/ledger.js'
import type { Discovery } from '../dht/discovery.js'
import type { Git } from '../git/git.js'
import type { DocumentStore } from '../knowledge/document-store.js'
import type { Signer } from '../records/signature.js'
import type { Reputation } from '../reputation/reputation.js'
import type { ProviderOutcome } from '../stage/dispatcher.js'
import type { JobRegistry } from '../stage/job-registry.js'
import type { RemoteStageContext } from '../stage/requester.js'
import type { StageRunner } from '../stage/runner.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EncryptionKeyPair } from './identity.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { StopStep } from './network-parts.js'

export interface RequestingInit {
  config: NodeConfig
  logger: Logger
  libp2p: EmdxLibp2p
  signer: Signer
  encryptionKey: EncryptionKeyPair
  database: RootDatabase
  ledger: Ledger
  reputation: Reputation
  discovery: Discovery
  /** Distrusts the forkers that the proofs name, stores the proofs and shares them with peers. */
  onForkProofs: (proofs: ForkProof[]) => void
  /** Runs stages in this node's sandbox, for local cascades; undefined without a sandbox. */
  runner?: StageRunner
  git: Git
  /** Registry the dispatcher reports the jobs it sends out to. */
  jobs?: JobRegistry
  spotChecks?: Omit<SpotCheckOptions, 'share'>
}

export interface Requesting {
  context: RemoteStageContext
  dispatcher: StageDispatcher
  spotChecks: SpotCheckPolicy
  /** Notices of executors that lost this node's jobs in a crash. */
  lostJobs: LostJobNotices
  documents: DocumentStore
  events: CascadeEvents
  cascades: CascadeService
}

/**
 * Starts what a node needs to send work out: the stage dispatcher with its
 * reputation feedback, the knowledge base, the cascade pipeline and its
 * webhooks. Unfinished cascades are resumed by the caller once the API is up.
 */
export async function startRequesting (init: RequestingInit, stopSteps: StopStep[]): Promise<Requesting> {
  const logger = init.logger.child({ component: 'cascade' })
  const context: RemoteStageContext = {
    libp2p: init.libp2p,
    signer: init.signer,
    encryptionKey: init.encryptionKey,
    logger: init.logger.child({ component: 'requester' }),
    ledger: init.ledger,
    onForkProofs: init.onForkProofs
  }

  const spotChecks = new SpotCheckPolicy({ ...init.spotChecks, share: init.config.spotCheckShare })
  const sentJobs = new SentJobs()
  const lostJobs = new LostJobNotices({ libp2p: init.libp2p, sent: sentJobs, logger: init.logger.child({ component: 'lost-jobs' }) })
  await lostJobs.start()
  stopSteps.push(async () => { await lostJobs.stop() })
  const dispatcher = new StageDispatcher({
    context,
    discovery: init.discovery,
    logger: init.logger.child({ component: 'dispatcher' }),
    outcomes: { report: (peer, outcome) => { recordOutcome(init.reputation, peer, outcome) } },
    jobs: init.jobs,
    trust: { view: init.reputation, spotChecks },
    onJobSent: (jobId, provider) => { sentJobs.record(jobId, provider) }
  })

  const documents = await openKnowledgeBase({ database: init.database, logger: init.logger })
  stopSteps.push(async () => { await documents.close() })

  const events = new CascadeEvents()
  const cascades = new CascadeService({
    store: new CascadeStore(init.database),
    documents,
    events,
    logger,
    remote: new RemoteTransformRunner(dispatcher),
    local: init.runner === undefined ? undefined : new LocalTransformRunner(init.runner),
    git: init.git,
    settle: async (checkpoint) => { await settleFromCheckpoint(context, checkpoint) },
    workDir: path.join(init.config.dataDir, 'cascades')
  })
  stopSteps.push(async () => { await cascades.stop() })

  await startWebhooks(init, cascades, events, stopSteps)
  return { context, dispatcher, spotChecks, lostJobs, documents, events, cascades }
}

/** Records completed, failed, timed out and wrong results in reputation; a rejection says nothing about quality. */
function recordOutcome (reputation: Reputation, peer: string, outcome: ProviderOutcome): void {
  if (outcome !== 'rejected') {
    reputation.recordOutcome(peer, outcome)
  }
}

/** Sends `stage_completed`, `cascade_completed` and `cascade_failed` to each cascade's callback URL. */
async function startWebhooks (init: RequestingInit, cascades: CascadeService, events: CascadeEvents, stopSteps: StopStep[]): Promise<void> {
  const logger = init.logger.child({ component: 'webhooks' })
  const webhooks = new WebhookDispatcher({ secret: await loadWebhookSecret(init.config.dataDir), logger })
  const unsubscribe = events.subscribe(({ event }) => {
    void forwardToWebhook(cascades, webhooks, event).catch((err: unknown) => {
      logger.warn({ cascade: event.cascadeId, err }, 'failed to queue a webhook event')
    })
  })
  stopSteps.push(async () => {
    unsubscribe()
    await webhooks.stop()
  })
}

async function forwardToWebhook (cascades: CascadeService, webhooks: WebhookDispatcher, event: CascadeEvent): Promise<void> {
  if (event.type !== 'stage_completed' && event.type !== 'cascade_completed' && event.type !== 'cascade_failed') {
    return
  }
  const record = await cascades.get(event.cascadeId)
  if (record?.callbackUrl === undefined) {
    return
  }

  if (event.type === 'stage_completed') {
    const transform = record.transforms.find(entry => entry.from === event.from)
    const elapsed = transform?.startedAt === undefined ? undefined : Date.parse(event.at) - Date.parse(transform.startedAt)
    webhooks.enqueue(record.callbackUrl, record.id, 'stage_completed', { stage: event.from, next_stage: event.to, document_id: event.documentId, provider: event.provider, elapsed_ms: elapsed, branch: event.branch })
  } else if (event.type === 'cascade_completed') {
    const documentIds = record.transforms.flatMap(transform => transform.outputDocumentId === undefined ? [] : [transform.outputDocumentId])
    webhooks.enqueue(record.callbackUrl, record.id, 'cascade_completed', { final_stage: record.stopStage, document_ids: documentIds })
  } else {
    webhooks.enqueue(record.callbackUrl, record.id, 'cascade_failed', { stage: event.from ?? record.startStage, error: event.reason })
  }
}
