import { STAGES } from '../cascade/stages.js'
import { CreditsViewBuilder } from './credits-view.js'
import type { CreditsLedger } from './credits-view.js'
import type { CascadeStageView, CascadeView, DashboardSnapshot, JobView, NetworkView, NodeView, ReputationView } from './snapshot-types.js'
import type { CascadeEvent } from '../cascade/events.js'
import type { CascadeService } from '../cascade/pipeline.js'
import type { CascadeRecord, Transform } from '../cascade/store.js'
import type { SeenRecord } from '../dht/discovery.js'
import type { NodeStatus } from '../node/node.js'
import type { Reputation } from '../reputation/reputation.js'
import type { JobRecord, JobRegistry } from '../stage/job-registry.js'

/** The parts of a started node that the dashboard reads. */
export interface DashboardSource {
  status: () => NodeStatus
  seenRecords: () => SeenRecord[]
  ledger: CreditsLedger
  reputation: Pick<Reputation, 'snapshot' | 'trustScore' | 'isDistrusted'>
  jobs: JobRegistry
  cascades: Pick<CascadeService, 'list'>
}

/** Cascades the dashboard lists, newest first. */
const MAX_CASCADES = 20
/** Jobs listed on each side: the running ones first, then the latest finished. */
const MAX_JOBS = 25
/** Peers listed under reputation. */
const MAX_REPUTATION_PEERS = 50
/** Characters of a progress line shown as a cascade's activity. */
const MAX_ACTIVITY_CHARS = 200
/** Cascade records are read again after this long even without an event, in milliseconds. */
const CASCADE_REFRESH_MS = 10_000

/**
 * Builds dashboard snapshots from the node's parts. Cascade records are
 * read from the store again only after a cascade event or every 10 s, and
 * the credits builder keeps its own caches, so building one every second
 * costs little.
 */
export class SnapshotBuilder {
  private readonly source: DashboardSource
  private readonly credits: CreditsViewBuilder
  private cascades: CascadeRecord[] = []
  private cascadesReadAt = 0
  private cascadesChanged = true
  private readonly activity = new Map<string, string>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor (source: DashboardSource, startedAt: number) {
    this.source = source
    this.credits = new CreditsViewBuilder(source.ledger, startedAt)
  }

  /** Takes a cascade event: the next snapshot reads the cascades again and shows the event. */
  noteEvent (event: CascadeEvent): void {
    this.cascadesChanged = true
    const text = describeEvent(event)
    if (text === undefined) {
      this.activity.delete(event.cascadeId)
    } else {
      this.activity.set(event.cascadeId, text)
    }
  }

  /** Builds a snapshot; builds run one at a time, because the credits history is extended in place. */
  async build (): Promise<DashboardSnapshot> {
    const run = this.queue.then(async () => await this.buildNow())
    this.queue = run.catch(() => {})
    return await run
  }

  private async buildNow (): Promise<DashboardSnapshot> {
    const now = Date.now()
    const status = this.source.status()
    const cascades = await this.recentCascades(now)
    return {
      generatedAt: new Date(now).toISOString(),
      node: nodeView(status),
      network: this.networkView(status),
      work: {
        executing: this.source.jobs.list('executor').slice(0, MAX_JOBS).map(job => jobView(job, now)),
        requested: this.source.jobs.list('requester').slice(0, MAX_JOBS).map(job => jobView(job, now))
      },
      cascades: cascades.map(record => cascadeView(record, this.activity.get(record.id))),
      credits: await this.credits.build(),
      reputation: this.reputationView()
    }
  }

  private async recentCascades (now: number): Promise<CascadeRecord[]> {
    if (this.cascadesChanged || now - this.cascadesReadAt >= CASCADE_REFRESH_MS) {
      this.cascadesChanged = false
      this.cascadesReadAt = now
      this.cascades = (await this.source.cascades.list()).slice(0, MAX_CASCADES)
      const listed = new Set(this.cascades.map(record => record.id))
      for (const id of this.activity.keys()) {
        if (!listed.has(id)) {
          this.activity.delete(id)
        }
      }
    }
    return this.cascades
  }

  private networkView (status: NodeStatus): NetworkView {
    const providers = this.source.seenRecords().map(({ record, rttMs, fetchedAt }) => ({
      peerId: record.peerId,
      trust: this.source.reputation.trustScore(record.peerId),
      distrusted: this.source.reputation.isDistrusted(record.peerId),
      price: record.price,
      freeCpus: record.cpus.free,
      totalCpus: record.cpus.total,
      freeMemoryBytes: record.memory.freeBytes,
      totalMemoryBytes: record.memory.totalBytes,
      runtime: record.runtime.name,
      isolation: record.runtime.isolation,
      agents: record.agents,
      rttMs: Math.round(rttMs),
      fetchedAt: new Date(fetchedAt).toISOString()
    }))
    return {
      connectedPeers: status.connectedPeers,
      routingTableSize: status.routingTableSize,
      totals: {
        providers: providers.length,
        freeCpus: roundCpus(sum(providers.map(provider => provider.freeCpus))),
        totalCpus: roundCpus(sum(providers.map(provider => provider.totalCpus))),
        freeMemoryBytes: sum(providers.map(provider => provider.freeMemoryBytes)),
        totalMemoryBytes: sum(providers.map(provider => provider.totalMemoryBytes))
      },
      providers
    }
  }

  private reputationView (): ReputationView {
    const snapshot = this.source.reputation.snapshot(MAX_REPUTATION_PEERS)
    return {
      ...(snapshot.computedAt === undefined ? {} : { computedAt: new Date(snapshot.computedAt).toISOString() }),
      peers: snapshot.peers.map(peer => ({
        peer: peer.peer,
        score: peer.score,
        localScore: peer.localScore,
        distrusted: peer.distrusted,
        forker: peer.forker,
        ...(peer.backedOffUntil === undefined ? {} : { backedOffUntil: new Date(peer.backedOffUntil).toISOString() })
      }))
    }
  }
}

function nodeView (status: NodeStatus): NodeView {
  return {
    peerId: status.peerId,
    version: status.version,
    addresses: status.addresses,
    startedAt: status.startedAt,
    uptimeSeconds: status.uptimeSeconds,
    sandbox: {
      backend: status.sandbox.backend,
      runtime: status.sandbox.runtime,
      isolation: status.sandbox.isolation,
      ...(status.sandbox.reason === undefined ? {} : { reason: status.sandbox.reason }),
      gvisor: status.sandbox.isolation === 'gvisor'
    },
    share: status.share
  }
}

function jobView (job: JobRecord, now: number): JobView {
  return {
    jobId: job.jobId,
    peer: job.peer,
    stage: job.stage,
    kind: job.kind,
    state: job.state,
    ...(job.outcome === undefined ? {} : { outcome: job.outcome }),
    ...(job.error === undefined ? {} : { error: job.error }),
    startedAt: new Date(job.startedAt).toISOString(),
    ...(job.finishedAt === undefined ? {} : { finishedAt: new Date(job.finishedAt).toISOString() }),
    elapsedMs: Math.max(0, (job.finishedAt ?? now) - job.startedAt)
  }
}

/** Places a cascade's transforms on the five stages: each transform decides the state of the stage it leads to. */
export function cascadeView (record: CascadeRecord, activity?: string): CascadeView {
  const start = STAGES.indexOf(record.startStage)
  const stop = STAGES.indexOf(record.stopStage)
  const byTarget = new Map<string, Transform>(record.transforms.map(transform => [transform.to, transform]))

  const stages: CascadeStageView[] = STAGES.map((stage, index) => {
    if (index < start || index > stop) {
      return { stage, state: 'skipped' }
    }
    if (index === start) {
      return { stage, state: 'done' }
    }
    const transform = byTarget.get(stage)
    return {
      stage,
      state: transform === undefined ? 'pending' : transformState(transform),
      ...(transform?.provider === undefined ? {} : { provider: transform.provider })
    }
  })

  const covered = stages.filter(stage => stage.state !== 'skipped')
  return {
    id: record.id,
    title: record.title,
    status: record.status,
    remote: record.remote,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    ...(record.error === undefined ? {} : { error: record.error }),
    stages,
    progress: { done: covered.filter(stage => stage.state === 'done').length, total: covered.length },
    ...(record.status === 'running' && activity !== undefined ? { activity } : {})
  }
}

function transformState (transform: Transform): CascadeStageView['state'] {
  switch (transform.state) {
    case 'completed':
      return 'done'
    case 'dispatched':
    case 'result-received':
      return 'running'
    case 'failed':
      return 'failed'
    case 'cancelled':
      return 'cancelled'
    default:
      return 'pending'
  }
}

/** Describes what a running cascade does now in a short line, or returns undefined for events that end it. */
function describeEvent (event: CascadeEvent): string | undefined {
  switch (event.type) {
    case 'cascade_created':
      return 'created'
    case 'stage_searching':
      return `${event.from} → ${event.to}: searching for a provider (attempt ${event.attempt})`
    case 'stage_dispatched':
      return `${event.from} → ${event.to}: offered to ${event.provider}`
    case 'stage_running':
      return `${event.from} → ${event.to}: running on ${event.provider}`
    case 'stage_progress':
      return `${event.from} → ${event.to}: ${(event.lines.at(-1) ?? 'running').slice(0, MAX_ACTIVITY_CHARS)}`
    case 'stage_retrying':
      return `${event.from} → ${event.to}: retrying in ${Math.round(event.delayMs / 1000)} s (${event.reason})`
    case 'stage_completed':
      return `${event.from} → ${event.to}: completed`
    default:
      return undefined
  }
}

function sum (values: number[]): number {
  return values.reduce((total, value) => total + value, 0)
}

/** Rounds sums of fractional CPUs such as 0.1 + 0.2 to three decimals. */
function roundCpus (cpus: number): number {
  return Math.round(cpus * 1000) / 1000
}
