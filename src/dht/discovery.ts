import { setMaxListeners } from 'node:events'
import { peerIdFromString } from '@libp2p/peer-id'
import { capacityKey, checkFreshness, openCapacityRecord } from './capacity-record.js'
import { queryCapacity } from './capacity-protocol.js'
import { classKeys, classLabel } from './classes.js'
import { incompatibility, rankCandidates } from './ranking.js'
import type { CapacityRecord } from './capacity-record.js'
import type { CapabilityClass } from './classes.js'
import type { Candidate, StageNeeds } from './ranking.js'
import type { Logger } from '../node/logger.js'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, PeerId, PeerInfo } from '@libp2p/interface'

/** What discovery needs to know of reputation; the reputation module implements it. */
export interface TrustView {
  /** Global trust of a peer, 0 to 1. */
  trust: (peerId: string) => number
  /** Peers never to send work to: proven cheaters, forkers, peers backed off after failures. */
  isExcluded: (peerId: string) => boolean
}

/** Trusts every peer equally, for nodes without reputation data. */
export const neutralTrust: TrustView = {
  trust: () => 0.5,
  isExcluded: () => false
}

export interface DiscoveryInit {
  libp2p: Libp2p<{ dht: KadDHT }>
  logger: Logger
  trust?: TrustView
  timing?: Partial<DiscoveryTiming>
  now?: () => number
}

export interface DiscoveryTiming {
  /** Time allowed for dialling a provider and reading its record. */
  queryTimeoutMs: number
  /** Time allowed for the DHT fallback when the direct query fails on a live connection. */
  dhtGetTimeoutMs: number
  /** Once enough providers are found, how long to wait for better ones. */
  graceMs: number
  /** First time a peer that failed to dial is skipped; doubles with each failure, up to maxUnreachableMs. */
  unreachableMs: number
  maxUnreachableMs: number
}

export const DEFAULT_DISCOVERY_TIMING: DiscoveryTiming = {
  queryTimeoutMs: 3_000,
  dhtGetTimeoutMs: 2_000,
  graceMs: 50,
  unreachableMs: 30_000,
  maxUnreachableMs: 30 * 60_000
}

export interface FindOptions {
  /** How many usable providers the caller wants. */
  count: number
  signal: AbortSignal
  /** Set to walk the DHT even when a recent walk found every provider there was, so newcomers are seen at once. */
  fresh?: boolean
}

/** A record this node has fetched lately, for the network view of the API and dashboard. */
export interface SeenRecord {
  record: CapacityRecord
  fetchedAt: number
  rttMs: number
}

const MAX_SEEN_RECORDS = 1000
const RECENTLY_SEEN_MS = 60_000
/**
 * How long a DHT walk that ran to its end is trusted to have found every
 * provider of its class. Within it, a search that has as many recently seen
 * providers as that walk found does not wait for the DHT: on a small
 * network every search would otherwise walk the whole DHT for providers
 * that do not exist. Such a search starts a walk in the background instead,
 * when the last one is older than BACKGROUND_WALK_AFTER_MS, so that a
 * provider that joined meanwhile is known to a later search.
 */
const WALK_MEMORY_MS = 10_000
/**
 * Age of the remembered walk after which a search that relies on it also
 * starts a new walk in the background. Searches a few seconds apart (the
 * stages of a cascade with quick agents) then share one walk, so the walks
 * do not take CPU from every stage.
 */
const BACKGROUND_WALK_AFTER_MS = 3_000
/** Time allowed for a background walk. */
const BACKGROUND_WALK_MS = 10_000

/**
 * Finds providers for a stage: asks the DHT for providers of the stage's
 * capability class on every shard, fetches each provider's current record
 * (direct query first, the DHT copy when the peer does not serve the query),
 * drops expired, full, incompatible, excluded and unreachable ones, and ranks
 * the rest. Records are fetched in parallel as providers arrive, so a stale
 * provider entry costs one failed dial, not a wait for others; a peer that
 * failed to dial is skipped without dialling until its back-off ends.
 */
export class Discovery {
  private readonly init: DiscoveryInit
  private readonly timing: DiscoveryTiming
  private readonly logger: Logger
  private readonly trust: TrustView
  private readonly now: () => number
  private readonly unreachable = new Map<string, { failures: number, until: number }>()
  private readonly seen = new Map<string, SeenRecord>()
  /** The last walk of each class that ran to its end short of the count, and how many usable providers it found. */
  private readonly walks = new Map<string, { at: number, found: number }>()
  /** Background walks under way, by class. */
  private readonly backgroundWalks = new Map<string, Promise<void>>()
  private readonly stopping = new AbortController()
  /** Counters for metrics: capacity queries sent, dials that failed, providers skipped without a dial. */
  readonly stats = { queries: 0, failedDials: 0, skippedUnreachable: 0, skippedExcluded: 0 }

  constructor (init: DiscoveryInit) {
    this.init = init
    this.timing = { ...DEFAULT_DISCOVERY_TIMING, ...init.timing }
    this.logger = init.logger
    this.trust = init.trust ?? neutralTrust
    this.now = init.now ?? Date.now
  }

  /** The class to search for a stage: the most specific thing it needs. */
  static classFor (needs: StageNeeds): CapabilityClass {
    if (needs.agent !== undefined) {
      return { kind: 'agent', agent: needs.agent }
    }
    if (needs.minIsolation !== undefined) {
      return { kind: 'isolation', isolation: needs.minIsolation }
    }
    return { kind: 'any' }
  }

  /**
   * Returns usable providers for the stage, best first. It stops when it has
   * `count` of them and a short grace period has passed, when every shard
   * query has ended, or when the signal aborts; it may return fewer.
   */
  async find (needs: StageNeeds, options: FindOptions): Promise<Candidate[]> {
    const capability = Discovery.classFor(needs)
    const label = classLabel(capability)
    const walk = this.walks.get(label)
    const walkedRecently = options.fresh !== true && walk !== undefined && this.now() - walk.at < WALK_MEMORY_MS
    const search = new ProviderSearch(this, needs, options, walkedRecently ? walk.found : undefined)
    const keys = await classKeys(capability)
    this.logger.debug({ class: label, count: options.count }, 'looking for providers')

    const walkKeys: ShardQueries = signal => keys.map(key => this.init.libp2p.services.dht.findProviders(key, { signal }))
    const candidates = await search.run(this.recentlySeenProviders(), walkKeys)
    this.noteWalk(label, search, options.count, candidates.length)
    if (walkedRecently && !search.walked && this.now() - walk.at >= BACKGROUND_WALK_AFTER_MS) {
      this.walkInBackground(label, needs, options.count, walkKeys)
    }
    return rankCandidates(candidates)
  }

  /** Waits until no background walk is under way, for callers that count dials. */
  async backgroundWalksDone (): Promise<void> {
    while (this.backgroundWalks.size > 0) {
      await Promise.allSettled([...this.backgroundWalks.values()])
    }
  }

  /** Stops the background walks. Searches that callers still run end with their own signals. */
  async stop (): Promise<void> {
    this.stopping.abort()
    await Promise.allSettled([...this.backgroundWalks.values()])
  }

  /**
   * Remembers a walk that ran to its end short of the count: it shows that
   * the class has no more providers than it found. Forgets the walk
   * remembered before when a search finds more usable providers than it did.
   */
  private noteWalk (label: string, search: ProviderSearch, count: number, found: number): void {
    const remembered = this.walks.get(label)
    if (search.walkedToEnd && found < count) {
      this.walks.set(label, { at: this.now(), found })
    } else if (search.walkedToEnd || (remembered !== undefined && found > remembered.found)) {
      this.walks.delete(label)
    }
  }

  /** Walks the DHT for a class without anyone waiting, one walk per class at a time. */
  private walkInBackground (label: string, needs: StageNeeds, count: number, walkKeys: ShardQueries): void {
    if (this.backgroundWalks.has(label) || this.stopping.signal.aborted) {
      return
    }
    const search = new ProviderSearch(this, needs, { count, signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(BACKGROUND_WALK_MS)]) })
    const walking = search.run([], walkKeys)
      .then(found => { this.noteWalk(label, search, count, found.length) })
      .catch((err: unknown) => { this.logger.debug({ err }, 'a background walk of the DHT failed') })
      .finally(() => { this.backgroundWalks.delete(label) })
    this.backgroundWalks.set(label, walking)
  }

  /**
   * Providers whose record was fetched within the last minute. A search asks
   * them at once, beside the DHT queries, because a provider seen a moment
   * ago is the likeliest to still be there; its record is fetched anew.
   */
  private recentlySeenProviders (): PeerInfo[] {
    const since = this.now() - RECENTLY_SEEN_MS
    return this.seenRecords()
      .filter(seen => seen.fetchedAt >= since)
      .map(seen => ({ id: peerIdFromString(seen.record.peerId), multiaddrs: [] }))
  }

  /** Forgets the records fetched and the walks made so far, so that the next search relies on the DHT alone. */
  forgetSeenRecords (): void {
    this.seen.clear()
    this.walks.clear()
  }

  /** Records fetched lately, newest first. */
  seenRecords (): SeenRecord[] {
    const now = this.now()
    return [...this.seen.values()]
      .filter(seen => seen.record.expiresAt > now)
      .sort((a, b) => b.fetchedAt - a.fetchedAt)
  }

  /** Marks a peer unreachable after a failed dial; it is skipped until its back-off ends. */
  markUnreachable (peerId: string): void {
    const previous = this.unreachable.get(peerId)
    const failures = (previous?.failures ?? 0) + 1
    const delay = Math.min(this.timing.unreachableMs * 2 ** (failures - 1), this.timing.maxUnreachableMs)
    this.unreachable.set(peerId, { failures, until: this.now() + delay })
  }

  isUnreachable (peerId: string): boolean {
    const entry = this.unreachable.get(peerId)
    return entry !== undefined && entry.until > this.now()
  }

  /** Returns why a provider is skipped before any dial, or undefined to fetch its record. */
  skipReason (peerId: string): string | undefined {
    if (peerId === this.init.libp2p.peerId.toString()) {
      return 'self'
    }
    if (this.trust.isExcluded(peerId)) {
      return 'excluded'
    }
    if (this.isUnreachable(peerId)) {
      return 'unreachable'
    }
    return undefined
  }

  /** Fetches a provider's current record; undefined when it cannot be had. */
  async fetchRecord (provider: PeerInfo, signal: AbortSignal): Promise<{ record: CapacityRecord, rttMs: number } | undefined> {
    const peerId = provider.id.toString()
    if (provider.multiaddrs.length > 0) {
      await this.init.libp2p.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
    }

    this.stats.queries++
    const querySignal = AbortSignal.any([signal, AbortSignal.timeout(this.timing.queryTimeoutMs)])
    try {
      const { record, elapsedMs } = await queryCapacity(this.init.libp2p, provider.id, { signal: querySignal, now: this.now() })
      this.unreachable.delete(peerId)
      this.remember(record, elapsedMs)
      return { record, rttMs: elapsedMs }
    } catch (err) {
      if (signal.aborted) {
        return undefined
      }
      if (this.init.libp2p.getConnections(provider.id).length === 0) {
        this.stats.failedDials++
        this.markUnreachable(peerId)
        this.logger.debug({ peer: peerId, err }, 'provider is unreachable; skipping it')
        return undefined
      }
      this.logger.debug({ peer: peerId, err }, 'direct capacity query failed; trying the DHT record')
    }
    return await this.fetchFromDht(provider.id, signal)
  }

  private async fetchFromDht (peer: PeerId, signal: AbortSignal): Promise<{ record: CapacityRecord, rttMs: number } | undefined> {
    const started = performance.now()
    const getSignal = AbortSignal.any([signal, AbortSignal.timeout(this.timing.dhtGetTimeoutMs)])
    try {
      for await (const event of this.init.libp2p.services.dht.get(capacityKey(peer.toString()), { signal: getSignal })) {
        if (event.name !== 'VALUE') {
          continue
        }
        const record = openCapacityRecord(event.value)
        checkFreshness(record, this.now())
        if (record.peerId === peer.toString()) {
          const rttMs = performance.now() - started
          this.remember(record, rttMs)
          return { record, rttMs }
        }
      }
    } catch (err) {
      this.logger.debug({ peer: peer.toString(), err }, 'no usable DHT record for the provider')
    }
    return undefined
  }

  private remember (record: CapacityRecord, rttMs: number): void {
    this.seen.delete(record.peerId)
    this.seen.set(record.peerId, { record, fetchedAt: this.now(), rttMs })
    if (this.seen.size > MAX_SEEN_RECORDS) {
      const oldest = this.seen.keys().next().value
      if (oldest !== undefined) {
        this.seen.delete(oldest)
      }
    }
  }

  /** Logs a step of a search at trace level, with the time since the search started. */
  trace (fields: Record<string, unknown>, message: string): void {
    this.logger.trace(fields, message)
  }

  countSkip (reason: string): void {
    if (reason === 'unreachable') {
      this.stats.skippedUnreachable++
    } else if (reason === 'excluded') {
      this.stats.skippedExcluded++
    }
  }

  trustOf (peerId: string): number {
    return this.trust.trust(peerId)
  }

  get graceMs (): number {
    return this.timing.graceMs
  }
}

/** The shard queries of one search, started anew with a signal each time they resume. */
type ShardQueries = (signal: AbortSignal) => Array<AsyncIterable<{ name: string, providers?: PeerInfo[] }>>

/**
 * Providers a search keeps in hand beyond the count it wants before it pauses its
 * DHT walks: enough that one or two full or unreachable providers do not
 * send it back to the DHT.
 */
const SPARE_PROVIDERS = 2

/**
 * One search: merges the shard queries, fetches records in parallel and
 * decides when to stop. A DHT walk goes on asking peers long after the first
 * providers arrive, and that traffic slows the record fetches the search is
 * waiting for. So the shard queries pause once the search has `count` +
 * SPARE_PROVIDERS providers (usable or being fetched), or `count` usable
 * ones. The grace period then waits only for fetches under way. The queries
 * resume if the providers in hand fall below `count`.
 *
 * When a walk of the class ran to its end lately and found fewer providers
 * than `count`, the search takes that many as enough: it walks only when
 * it has fewer in hand.
 *
 * NOTE: ranking then chooses among the first providers the DHT returned, not
 * among every provider of the class, so a better provider found later in a
 * walk is missed.
 */
class ProviderSearch {
  private readonly discovery: Discovery
  private readonly needs: StageNeeds
  private readonly count: number
  private readonly controller = new AbortController()
  private readonly considered = new Set<string>()
  private readonly usable: Array<Omit<Candidate, 'score'>> = []
  private readonly fetches = new Set<Promise<void>>()
  private queries?: ShardQueries
  /** Aborts the running round of shard queries, to pause them. */
  private round?: AbortController
  /** Set when a round of shard queries ran to its end: the DHT has nothing more. */
  private exhausted = false
  private queried = false
  /** Providers in hand below which the search walks the DHT, and below which it resumes a paused walk. */
  private readonly walkBelow: number
  private readonly resumeBelow: number
  private graceTimer?: NodeJS.Timeout
  private finish!: () => void
  private readonly started = performance.now()
  readonly signal: AbortSignal

  /** `lastWalkFound`: the usable providers of a walk of this class that ran to its end lately. */
  constructor (discovery: Discovery, needs: StageNeeds, options: FindOptions, lastWalkFound?: number) {
    this.discovery = discovery
    this.needs = needs
    this.count = options.count
    const enough = lastWalkFound === undefined ? undefined : Math.max(1, Math.min(options.count, lastWalkFound))
    this.walkBelow = enough ?? options.count + SPARE_PROVIDERS
    this.resumeBelow = enough ?? options.count
    this.signal = AbortSignal.any([options.signal, this.controller.signal])
    // Every shard query and record fetch listens on this signal.
    setMaxListeners(Infinity, this.signal)
  }

  async run (known: PeerInfo[], queries: ShardQueries): Promise<Array<Omit<Candidate, 'score'>>> {
    const finished = new Promise<void>(resolve => { this.finish = resolve })
    this.signal.addEventListener('abort', () => { this.finish() }, { once: true })
    this.queries = queries
    known.forEach(provider => { this.consider(provider) })
    if (this.inHand() < this.walkBelow) {
      this.startQueries()
    } else {
      this.discovery.trace({ known: known.length }, 'recently seen providers are enough; the DHT waits')
    }

    await finished
    clearTimeout(this.graceTimer)
    // Shard queries and record fetches still under way end on this abort;
    // they catch their own errors, so nothing waits for them to unwind.
    this.controller.abort()
    return [...this.usable]
  }

  /** True when a round of shard queries ran to its end, so the DHT had no more providers. */
  get walkedToEnd (): boolean {
    return this.exhausted
  }

  /** True when the search queried the DHT at all. */
  get walked (): boolean {
    return this.queried
  }

  /** Providers usable or being fetched. */
  private inHand (): number {
    return this.usable.length + this.fetches.size
  }

  private startQueries (): void {
    if (this.round !== undefined || this.exhausted || this.queries === undefined || this.signal.aborted) {
      return
    }
    const round = new AbortController()
    this.round = round
    this.queried = true
    const signal = AbortSignal.any([this.signal, round.signal])
    setMaxListeners(Infinity, signal)
    void Promise.all(this.queries(signal).map(async query => { await this.drain(query) })).then(() => {
      this.round = undefined
      if (!round.signal.aborted) {
        this.exhausted = true
      }
      this.settle()
    })
  }

  private pauseQueries (): void {
    if (this.round !== undefined && (this.inHand() >= this.count + SPARE_PROVIDERS || this.usable.length >= this.count)) {
      this.discovery.trace({ inHand: this.inHand(), elapsedMs: Math.round(performance.now() - this.started) }, 'enough providers in hand; pausing the DHT queries')
      this.round.abort()
    }
  }

  /** After a fetch or a round of queries ends: resumes the queries if needed, or ends the search when nothing is left to wait for. */
  private settle (): void {
    if (this.signal.aborted) {
      return
    }
    if (this.inHand() < this.resumeBelow && !this.exhausted) {
      this.startQueries()
      return
    }
    if (this.round === undefined && this.fetches.size === 0) {
      this.finish()
    }
  }

  private async drain (query: AsyncIterable<{ name: string, providers?: PeerInfo[] }>): Promise<void> {
    try {
      for await (const event of query) {
        if (event.name === 'PROVIDER' && event.providers !== undefined) {
          event.providers.forEach(provider => { this.consider(provider) })
        }
      }
    } catch {
      // An aborted or failed shard query ends; the others go on.
    }
  }

  private consider (provider: PeerInfo): void {
    const peerId = provider.id.toString()
    if (this.considered.has(peerId) || this.signal.aborted) {
      return
    }
    this.considered.add(peerId)
    this.discovery.trace({ peer: peerId, elapsedMs: Math.round(performance.now() - this.started) }, 'found a provider')
    const skip = this.discovery.skipReason(peerId)
    if (skip !== undefined) {
      this.discovery.countSkip(skip)
      return
    }

    const fetch = this.evaluate(provider).finally(() => {
      this.fetches.delete(fetch)
      this.settle()
    })
    this.fetches.add(fetch)
    this.pauseQueries()
  }

  private async evaluate (provider: PeerInfo): Promise<void> {
    const fetched = await this.discovery.fetchRecord(provider, this.signal)
    if (fetched === undefined || this.signal.aborted) {
      return
    }
    this.discovery.trace({ peer: provider.id.toString(), elapsedMs: Math.round(performance.now() - this.started), rttMs: Math.round(fetched.rttMs) }, 'fetched a provider record')
    if (incompatibility(fetched.record, this.needs) !== undefined) {
      return
    }

    const peerId = provider.id.toString()
    this.usable.push({ peerId, record: fetched.record, rttMs: fetched.rttMs, trust: this.discovery.trustOf(peerId) })
    if (this.usable.length >= this.count && this.graceTimer === undefined) {
      this.graceTimer = setTimeout(() => { this.finish() }, this.discovery.graceMs)
      this.pauseQueries()
    }
  }
}
