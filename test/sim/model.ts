/**
 * A model of an emdx network of many nodes that drives the real credit and
 * reputation code. Every node has a real Ledger, in memory-level because a
 * LevelDB folder per node would make 10,000 nodes too slow for CI. It signs
 * real receipts, ledger entries and trust reports with its own Ed25519 key,
 * and decides with the real admission, EigenTrust, backoff and spot check
 * code. What is modelled rather than run:
 *
 * - Discovery returns CANDIDATES random providers per stage.
 * - Stages are not executed: a result is right or garbage by the provider's
 *   kind, and canary stages are unpaid.
 * - Global trust is computed by one vantage node per group of nodes
 *   (VANTAGE_GROUPS of them); every node of a group ranks with its
 *   vantage's global trust and its own local trust, backoff and fork proofs.
 *   A real node computes its own; this saves 10,000 EigenTrust runs a round.
 * - Trust reports are verified once when gossiped rather than by each node.
 * - A head directory stands in for a DHT record of each node's newest
 *   ledger entry, which executors publish after each job and read before
 *   admission; it is what exposes forkers.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MemoryLevel } from 'memory-level'
import { STARTING_GRANT, admitRequester } from '../../src/credits/admission.js'
import { decodeForkProof, encodeForkProof } from '../../src/credits/fork-proof.js'
import { Ledger } from '../../src/credits/ledger.js'
import { decodeLedgerEntryBody } from '../../src/credits/ledger-entry.js'
import { countersignReceipt, creditsFor, issueReceipt } from '../../src/credits/receipt.js'
import { sha256 } from '../../src/records/hash.js'
import { createSigner } from '../../src/records/signature.js'
import { Reputation } from '../../src/reputation/reputation.js'
import { SpotCheckPolicy, judgeDuplicates } from '../../src/reputation/spot-check.js'
import { chooseProviders } from '../../src/reputation/selection.js'
import { decodeTrustReport } from '../../src/reputation/trust-report.js'
import type { ForkProof } from '../../src/credits/fork-proof.js'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import type { LedgerEntry } from '../../src/credits/ledger-entry.js'
import type { JobTerms, Price, ReceiptBody } from '../../src/credits/receipt.js'
import type { Signer } from '../../src/records/signature.js'
import type { StageOutcome } from '../../src/reputation/local-trust.js'
import type { TrustView } from '../../src/reputation/selection.js'

export type NodeKind = 'honest' | 'free-rider' | 'cheater' | 'sybil' | 'forker'

export interface SimulationOptions {
  nodes: number
  /** Share of adversaries, split evenly between free-riders, cheaters, Sybil ring members and forkers. */
  adversaryShare: number
  rounds: number
  /** Honest stages requested per round. */
  honestRequestsPerRound: number
  /** Share of adversary requesters that request a stage each round. */
  adversaryRequestShare: number
  /** Rounds before which figures do not count towards the targets. */
  warmupRounds: number
  seed: number
}

export const DEFAULT_OPTIONS: SimulationOptions = {
  nodes: 10_000,
  adversaryShare: 0.2,
  rounds: 10,
  honestRequestsPerRound: 800,
  adversaryRequestShare: 0.3,
  warmupRounds: 4,
  seed: 1
}

const BOOTSTRAP_PEERS = 10
const VANTAGE_GROUPS = 4
const CANDIDATES = 20
const TOP_CHOICES = 3
const ADMISSION_ATTEMPTS = 3
const SYBIL_RING_SIZE = 10
const CHEATER_GARBAGE_SHARE = 0.5
const DETERMINISTIC_SHARE = 0.3
const ROUND_MS = 10 * 60_000
/** Nodes send trust reports every 20 minutes: every other round. */
const REPORT_EVERY_ROUNDS = 2
const PRICE: Price = { perCpuSecond: 1000, perGibSecond: 0, perThousandTokens: 0 }

interface SimNode {
  index: number
  kind: NodeKind
  signer: Signer
  ledger: Ledger
  /** A forker's second branch, signed with the same key. */
  forkedLedger?: Ledger
  usingFork: boolean
  reputation: Reputation
  spotChecks: SpotCheckPolicy
  group: number
  provides: boolean
  /** Providers past probation with this node. */
  verified: Set<SimNode>
  /** The provider this node is part-way through checking with canaries. */
  probing?: SimNode
}

export interface RoundFigures {
  round: number
  realStages: number
  stagesToAdversaries: number
  admissionRejections: number
  forkProofs: number
  byKind: Partial<Record<NodeKind, number>>
}

export interface SimulationResult {
  options: SimulationOptions
  rounds: RoundFigures[]
  /** Share of honest requesters' real stages that adversary providers ran, after warm-up. */
  adversaryWorkShareAfterWarmup: number
  /** Share of providers among the adversaries: what random choice would send them. */
  adversaryProviderShare: number
  /**
   * Millicredits of honest work adversaries received without paying: for
   * each adversary, what honest providers ran for it minus the right results
   * it delivered to honest requesters, never below 0, summed.
   */
  adversaryUnpaidWork: number
  adversaryGrants: number
  adversaryRequesters: number
  /** Forkers distrusted by every vantage, out of those that presented a forked branch. */
  forkersDistrusted: number
  forkersThatForked: number
  forkers: number
  balanceSum: number
  grantSum: number
  receipts: number
  /** Each vantage's EigenTrust run: wall time, iterations and peers with trust. */
  eigenTrustRuns: Array<{ ms: number, iterations: number, peers: number }>
}

/** Mulberry32: a small seeded generator, so that runs are repeatable. */
function seededRandom (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D2B79F5) >>> 0
    let mixed = state
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1)
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61)
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** The PKCS #8 encoding of an Ed25519 private key, up to its 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Makes the libp2p key of a seed, deriving its public half with Node's own
 * Ed25519: @libp2p/crypto derives it in JavaScript, which cost seconds of a
 * run of 10,000 nodes.
 */
function keyFromSeed (seed: Uint8Array): Ed25519PrivateKey {
  const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  const publicKey = Buffer.from(String(createPublicKey(key).export({ format: 'jwk' }).x), 'base64url')
  return privateKeyFromRaw(Buffer.concat([seed, publicKey])) as Ed25519PrivateKey
}

export class Simulation {
  private readonly options: SimulationOptions
  private readonly random: () => number
  private readonly nodes: SimNode[] = []
  private readonly byPeer = new Map<string, SimNode>()
  private readonly providers: SimNode[] = []
  private readonly vantages: Reputation[] = []
  /** The newest ledger entry of each node, as executors published it. */
  private readonly headDirectory = new Map<string, LedgerEntry>()
  private readonly pendingProofs: ForkProof[] = []
  /** Nodes whose local trust changed since their last report. */
  private readonly changed = new Set<SimNode>()
  private readonly reported = new Set<SimNode>()
  private now = 1_700_000_000_000
  private jobCounter = 0
  private receipts = 0
  /** Millicredits of work honest providers ran for each adversary. */
  private readonly adversaryReceived = new Map<SimNode, number>()
  /** Millicredits of right results each adversary delivered to honest requesters. */
  private readonly adversaryDelivered = new Map<SimNode, number>()
  private figures: RoundFigures = this.emptyFigures(0)
  private readonly eigenTrustRuns: SimulationResult['eigenTrustRuns'] = []

  constructor (options: Partial<SimulationOptions> = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options }
    this.random = seededRandom(this.options.seed)
  }

  async run (): Promise<SimulationResult> {
    await this.createNodes()
    await this.mintInSybilRings()
    const rounds: RoundFigures[] = []
    for (let round = 1; round <= this.options.rounds; round++) {
      this.figures = this.emptyFigures(round)
      await this.runRound()
      this.spreadForkProofs()
      if (round % REPORT_EVERY_ROUNDS === 0) {
        this.exchangeTrustReports()
      }
      this.now += ROUND_MS
      rounds.push(this.figures)
    }
    return this.result(rounds)
  }

  private emptyFigures (round: number): RoundFigures {
    return { round, realStages: 0, stagesToAdversaries: 0, admissionRejections: 0, forkProofs: 0, byKind: {} }
  }

  private async createNodes (): Promise<void> {
    const adversaries = Math.round(this.options.nodes * this.options.adversaryShare)
    const kinds: NodeKind[] = ['free-rider', 'cheater', 'sybil', 'forker']
    const clock = (): number => this.now
    const bootstrap: string[] = []

    for (let index = 0; index < this.options.nodes; index++) {
      const adversaryIndex = index - (this.options.nodes - adversaries)
      const kind: NodeKind = adversaryIndex < 0 ? 'honest' : kinds[Math.floor(adversaryIndex * kinds.length / adversaries)]!
      const seed = sha256(new TextEncoder().encode(`emdx-sim-${this.options.seed}-${index}`))
      const privateKey = keyFromSeed(seed)
      const signer = createSigner(privateKey, peerIdFromPrivateKey(privateKey).toString())
      if (index < BOOTSTRAP_PEERS) {
        bootstrap.push(signer.peerId)
      }

      const node: SimNode = {
        index,
        kind,
        signer,
        ledger: await openMemoryLedger(signer, clock),
        usingFork: false,
        reputation: new Reputation({ self: signer.peerId, bootstrapPeers: bootstrap, clock }),
        spotChecks: new SpotCheckPolicy({ random: this.random }),
        group: index % VANTAGE_GROUPS,
        verified: new Set(),
        provides: kind === 'honest' || kind === 'cheater' || kind === 'sybil'
      }
      if (kind === 'forker') {
        node.forkedLedger = await openMemoryLedger(signer, clock)
      }
      this.nodes.push(node)
      this.byPeer.set(signer.peerId, node)
      if (node.provides) {
        this.providers.push(node)
      }
    }

    // Every node's bootstrap list is the first BOOTSTRAP_PEERS honest nodes.
    for (const node of this.nodes) {
      node.reputation = new Reputation({ self: node.signer.peerId, bootstrapPeers: bootstrap, clock })
    }
    for (let group = 0; group < VANTAGE_GROUPS; group++) {
      this.vantages.push(this.nodes[BOOTSTRAP_PEERS + group]!.reputation)
    }
  }

  /** Each Sybil ring signs receipts for large jobs that its first member never ran. */
  private async mintInSybilRings (): Promise<void> {
    const sybils = this.nodes.filter(node => node.kind === 'sybil')
    for (let start = 0; start < sybils.length; start += SYBIL_RING_SIZE) {
      const [minter, ...payers] = sybils.slice(start, start + SYBIL_RING_SIZE)
      for (const payer of payers) {
        await this.settle(minter!, payer, 5_000, true)
      }
    }
  }

  private async runRound (): Promise<void> {
    const requests: SimNode[] = []
    const honest = this.nodes.filter(node => node.kind === 'honest')
    for (let request = 0; request < this.options.honestRequestsPerRound; request++) {
      requests.push(honest[Math.floor(this.random() * honest.length)]!)
    }
    for (const node of this.nodes) {
      if (node.kind !== 'honest' && this.random() < this.options.adversaryRequestShare) {
        requests.push(node)
      }
    }
    shuffle(requests, this.random)

    for (const requester of requests) {
      await this.requestStage(requester)
    }
    for (const node of honest) {
      this.probe(node)
    }
  }

  private candidatesFor (requester: SimNode): SimNode[] {
    const candidates = new Set<SimNode>()
    while (candidates.size < CANDIDATES) {
      const provider = this.providers[Math.floor(this.random() * this.providers.length)]!
      if (provider !== requester) {
        candidates.add(provider)
      }
    }
    return [...candidates]
  }

  private async requestStage (requester: SimNode): Promise<void> {
    this.changed.add(requester)
    const candidates = this.candidatesFor(requester)
    const cpuSeconds = 20 + Math.floor(this.random() * 21)
    const deterministic = this.random() < DETERMINISTIC_SHARE

    if (requester.kind !== 'honest') {
      // Adversaries take any provider that admits them.
      for (const provider of candidates.slice(0, ADMISSION_ATTEMPTS)) {
        if (await this.admits(provider, requester, cpuSeconds)) {
          await this.runAndSettle(provider, requester, cpuSeconds, false)
          return
        }
      }
      return
    }

    const order = this.orderForRealStage(requester, [...candidates, ...requester.verified])
    for (const provider of order.slice(0, ADMISSION_ATTEMPTS)) {
      if (!await this.admits(provider, requester, cpuSeconds)) {
        continue
      }
      const check = requester.spotChecks.choose(provider.signer.peerId, deterministic)
      if (check === 'duplicate') {
        const second = order.find(other => other !== provider)
        await this.runDuplicated(requester, cpuSeconds, provider, second)
      } else {
        await this.runAndSettle(provider, requester, cpuSeconds, check === 'canary')
      }
      return
    }
  }

  /** The requester's view: its own distrust and local trust, its vantage's global trust. */
  private viewOf (requester: SimNode): TrustView {
    const vantage = this.vantages[requester.group]!
    return {
      isDistrusted: peer => requester.reputation.isDistrusted(peer) || vantage.isForker(peer),
      localScore: peer => requester.reputation.localScore(peer),
      globalTrust: peer => vantage.globalTrust(peer),
      trustScore: peer => vantage.trustScore(peer)
    }
  }

  /**
   * Orders providers for a real stage with the real choice code. One of the
   * best TOP_CHOICES verified ones comes first, so that load spreads. Without
   * verified ones (early on), the best by global trust of those on probation
   * follow.
   */
  private orderForRealStage (requester: SimNode, candidates: SimNode[]): SimNode[] {
    const peers = candidates.filter(candidate => candidate !== requester).map(candidate => candidate.signer.peerId)
    const { verified, onProbation } = chooseProviders(peers, this.viewOf(requester), requester.spotChecks)
    const best = verified.slice(0, TOP_CHOICES)
    shuffle(best, this.random)
    return [...best, ...verified.slice(TOP_CHOICES), ...onProbation].map(peer => this.byPeer.get(peer)!)
  }

  /**
   * An unpaid canary stage, which is how a provider earns a requester's
   * trust: the provider the requester is part-way through checking, or else
   * a random one it has not met.
   */
  private probe (requester: SimNode): void {
    let provider = requester.probing
    if (provider === undefined || requester.reputation.isDistrusted(provider.signer.peerId) || !requester.spotChecks.isOnProbation(provider.signer.peerId)) {
      provider = this.providers[Math.floor(this.random() * this.providers.length)]!
      if (provider === requester || requester.reputation.local.hasExperience(provider.signer.peerId)) {
        return
      }
    }

    const peer = provider.signer.peerId
    const passed = this.resultIsRight(provider)
    this.noteCheck(requester, provider, passed)
    requester.reputation.recordOutcome(peer, passed ? 'completed' : 'wrong_result')
    requester.probing = passed && requester.spotChecks.isOnProbation(peer) ? provider : undefined
    this.changed.add(requester)
  }

  private noteCheck (requester: SimNode, provider: SimNode, passed: boolean): void {
    requester.spotChecks.recordCheck(provider.signer.peerId, passed)
    if (passed && !requester.spotChecks.isOnProbation(provider.signer.peerId)) {
      requester.verified.add(provider)
    } else if (!passed) {
      requester.verified.delete(provider)
    }
  }

  private resultIsRight (provider: SimNode): boolean {
    switch (provider.kind) {
      case 'cheater': return this.random() >= CHEATER_GARBAGE_SHARE
      case 'sybil': return false
      default: return true
    }
  }

  /** Admission on the provider's side; adversary providers admit everyone. */
  private async admits (provider: SimNode, requester: SimNode, cpuSeconds: number): Promise<boolean> {
    if (provider.kind !== 'honest') {
      return true
    }
    const peer = requester.signer.peerId
    const chainOwner = requester.usingFork ? requester.forkedLedger! : requester.ledger

    const published = this.headDirectory.get(peer)
    if (published !== undefined) {
      const proof = await provider.ledger.recordWitness(published)
      if (proof !== undefined) {
        this.pendingProofs.push(proof)
        this.figures.forkProofs++
      }
    }

    const vantage = this.vantages[provider.group]!
    let admitted = false
    try {
      // From the last verified entry on, inclusive: a rewritten history then shows as a fork.
      const known = await provider.ledger.verifiedChain(peer)
      const segment = await chainOwner.exportSegment(Math.max(0, known.seq))
      const trust = {
        trustScore: (other: string) => vantage.trustScore(other),
        isDistrusted: (other: string) => provider.reputation.isDistrusted(other) || vantage.isForker(other)
      }
      const decision = await admitRequester(provider.ledger, trust, segment, creditsFor(resourcesFor(cpuSeconds), PRICE))
      for (const proof of decision.forkProofs) {
        this.pendingProofs.push(proof)
        this.figures.forkProofs++
      }
      admitted = decision.admitted
    } catch {
      // A segment that does not verify, or hides newer entries, is a rejection.
      admitted = false
    }

    if (!admitted) {
      this.figures.admissionRejections++
      if (requester.kind === 'forker' && !requester.usingFork) {
        await this.startForkedBranch(requester)
      }
    }
    return admitted
  }

  /**
   * A forker whose grant is spent rewrites its history: a second branch that
   * it pads with receipts from other forkers up to the length of the first,
   * so that its balance looks untouched.
   */
  private async startForkedBranch (forker: SimNode): Promise<void> {
    forker.usingFork = true
    const target = forker.ledger.head().seq
    const accomplices = this.nodes.filter(node => node.kind === 'forker' && node !== forker)
    while (forker.forkedLedger!.head().seq < target) {
      const accomplice = accomplices[Math.floor(this.random() * accomplices.length)]!
      const job = this.newJob(accomplice, forker, 1)
      const receipt = countersignReceipt(issueReceipt(job.body, accomplice.signer), forker.signer)
      await forker.forkedLedger!.append(receipt, job.terms)
      // The accomplice's ledger gets its side too, so that sums still add up.
      await (accomplice.usingFork ? accomplice.forkedLedger! : accomplice.ledger).append(receipt, job.terms)
      this.receipts++
    }
  }

  private async runAndSettle (provider: SimNode, requester: SimNode, cpuSeconds: number, withCanary: boolean): Promise<void> {
    this.countStage(provider, requester, cpuSeconds)
    const right = this.resultIsRight(provider)
    const honestRequester = requester.kind === 'honest'

    if (honestRequester && withCanary) {
      // The canary is a separate stage: a cheater returns garbage for it by its own odds.
      const canaryPassed = this.resultIsRight(provider)
      this.noteCheck(requester, provider, canaryPassed)
      if (!canaryPassed) {
        requester.reputation.recordOutcome(provider.signer.peerId, 'wrong_result')
        return
      }
    }

    await this.settle(provider, requester, cpuSeconds, false)
    if (honestRequester) {
      this.recordDelivery(provider, cpuSeconds, right)
      requester.reputation.recordOutcome(provider.signer.peerId, 'completed')
    }
  }

  private async runDuplicated (requester: SimNode, cpuSeconds: number, first: SimNode, second: SimNode | undefined): Promise<void> {
    if (second === undefined) {
      await this.runAndSettle(first, requester, cpuSeconds, true)
      return
    }
    const correct = sha256(new TextEncoder().encode(`job-${this.jobCounter}`))
    const resultOf = (provider: SimNode): Uint8Array => this.resultIsRight(provider) ? correct : sha256(new TextEncoder().encode(`garbage-${this.random()}`))
    const results = [first, second].map(provider => ({ provider: provider.signer.peerId, resultHash: resultOf(provider) }))
    this.countStage(first, requester, cpuSeconds)
    this.countStage(second, requester, cpuSeconds)

    let verdict = judgeDuplicates(results)
    if (verdict.agreed === undefined) {
      const third = this.orderForRealStage(requester, this.candidatesFor(requester)).find(node => node !== first && node !== second)
      if (third !== undefined && await this.admits(third, requester, cpuSeconds)) {
        this.countStage(third, requester, cpuSeconds)
        results.push({ provider: third.signer.peerId, resultHash: resultOf(third) })
        verdict = judgeDuplicates(results)
      }
    }

    for (const result of results) {
      const provider = this.byPeer.get(result.provider)!
      const wrong = verdict.wrong.includes(result.provider) || verdict.agreed === undefined
      this.noteCheck(requester, provider, !wrong)
      if (wrong) {
        requester.reputation.recordOutcome(result.provider, verdict.agreed === undefined ? 'failed' : 'wrong_result')
        continue
      }
      await this.settle(provider, requester, cpuSeconds, false)
      this.recordDelivery(provider, cpuSeconds, true)
      requester.reputation.recordOutcome(result.provider, 'completed')
    }
  }

  /** Counts a stage that a provider runs; the work share counts only honest requesters' stages. */
  private countStage (provider: SimNode, requester: SimNode, cpuSeconds: number): void {
    if (requester.kind === 'honest') {
      this.figures.realStages++
      if (provider.kind !== 'honest') {
        this.figures.stagesToAdversaries++
        this.figures.byKind[provider.kind] = (this.figures.byKind[provider.kind] ?? 0) + 1
      }
    }
    if (provider.kind === 'honest' && requester.kind !== 'honest') {
      this.adversaryReceived.set(requester, (this.adversaryReceived.get(requester) ?? 0) + creditsFor(resourcesFor(cpuSeconds), PRICE))
    }
  }

  /** Counts a result an honest requester accepted and paid for; only right ones are real work. */
  private recordDelivery (provider: SimNode, cpuSeconds: number, right: boolean): void {
    if (provider.kind !== 'honest' && right) {
      this.adversaryDelivered.set(provider, (this.adversaryDelivered.get(provider) ?? 0) + creditsFor(resourcesFor(cpuSeconds), PRICE))
    }
  }

  private newJob (executor: SimNode, requester: SimNode, cpuSeconds: number): { body: ReceiptBody, terms: JobTerms } {
    this.jobCounter++
    const jobId = this.jobCounter.toString(16).padStart(32, '0')
    const resources = resourcesFor(cpuSeconds)
    const credits = creditsFor(resources, PRICE)
    const resultHash = sha256(new TextEncoder().encode(jobId))
    const body: ReceiptBody = {
      version: 1,
      jobId,
      requester: requester.signer.peerId,
      executor: executor.signer.peerId,
      stage: 'planned',
      kind: 'agent',
      outcome: 'succeeded',
      resources,
      price: PRICE,
      credits,
      resultHash: resultHash as ReceiptBody['resultHash'],
      startedAt: this.now,
      finishedAt: this.now + cpuSeconds * 1000
    }
    return { body, terms: { jobId, requester: requester.signer.peerId, executor: executor.signer.peerId, price: PRICE, maxCredits: credits, resultHash } }
  }

  /** Signs the receipt on both sides, appends it to both ledgers and exchanges witness entries. */
  private async settle (executor: SimNode, requester: SimNode, cpuSeconds: number, minting: boolean): Promise<void> {
    const job = this.newJob(executor, requester, cpuSeconds)
    const receipt = countersignReceipt(issueReceipt(job.body, executor.signer), requester.signer)
    const requesterLedger = requester.usingFork ? requester.forkedLedger! : requester.ledger
    const requesterEntry = await requesterLedger.append(receipt, job.terms)
    await executor.ledger.append(receipt, job.terms)
    this.receipts++
    if (minting || executor.kind !== 'honest') {
      return
    }

    await executor.ledger.recordWitness(requesterEntry)
    const published = this.headDirectory.get(requester.signer.peerId)
    if (published === undefined || decodeLedgerEntryBody(published.body).seq < decodeLedgerEntryBody(requesterEntry.body).seq) {
      this.headDirectory.set(requester.signer.peerId, requesterEntry)
    }
  }

  /** Sends each new fork proof to every node, which verifies it from its bytes. */
  private spreadForkProofs (): void {
    for (const proof of this.pendingProofs.splice(0)) {
      const verified = decodeForkProof(encodeForkProof(proof))
      for (const node of this.nodes) {
        if (node.kind === 'honest') {
          node.reputation.markForker(verified.owner)
        }
      }
    }
  }

  /** Every node with experience signs a report; the vantages verify them and recompute global trust. */
  private exchangeTrustReports (): void {
    for (const node of this.nodes) {
      const due = node.kind === 'honest' ? this.changed.has(node) : !this.reported.has(node)
      if (!due) {
        continue
      }
      this.reported.add(node)
      const bytes = node.kind === 'honest' ? node.reputation.createReport(node.signer) : this.adversaryReport(node)
      const report = decodeTrustReport(bytes)
      for (const vantage of this.vantages) {
        vantage.acceptVerifiedReport(report)
      }
    }
    this.changed.clear()
    for (const vantage of this.vantages) {
      const started = performance.now()
      const { iterations, peers } = vantage.recompute()
      this.eigenTrustRuns.push({ ms: performance.now() - started, iterations, peers })
    }
  }

  /** Adversaries vouch for each other: a Sybil for its ring, the others for adversaries of their kind. */
  private adversaryReport (node: SimNode): Uint8Array {
    const liar = new Reputation({ self: node.signer.peerId, bootstrapPeers: [], clock: () => this.now })
    const start = node.kind === 'sybil'
      ? node.index - ((node.index - this.firstOfKind('sybil')) % SYBIL_RING_SIZE)
      : node.index - 5
    for (let index = start; index < start + SYBIL_RING_SIZE; index++) {
      const other = this.nodes[index]
      if (other !== undefined && other !== node && other.kind !== 'honest') {
        liar.recordOutcome(other.signer.peerId, 'completed')
      }
    }
    return liar.createReport(node.signer)
  }

  private firstOfKind (kind: NodeKind): number {
    return this.nodes.findIndex(node => node.kind === kind)
  }

  private result (rounds: RoundFigures[]): SimulationResult {
    const counted = rounds.filter(round => round.round > this.options.warmupRounds)
    const realStages = counted.reduce((sum, round) => sum + round.realStages, 0)
    const toAdversaries = counted.reduce((sum, round) => sum + round.stagesToAdversaries, 0)
    const adversaries = this.nodes.filter(node => node.kind !== 'honest')
    const adversaryProviders = this.providers.filter(node => node.kind !== 'honest').length
    const forkers = adversaries.filter(node => node.kind === 'forker')
    const ledgers = this.nodes.flatMap(node => node.forkedLedger === undefined ? [node.ledger] : [node.ledger, node.forkedLedger])

    return {
      options: this.options,
      rounds,
      adversaryWorkShareAfterWarmup: realStages === 0 ? 0 : toAdversaries / realStages,
      adversaryProviderShare: adversaryProviders / this.providers.length,
      adversaryUnpaidWork: adversaries.reduce((sum, node) => sum + Math.max(0, (this.adversaryReceived.get(node) ?? 0) - (this.adversaryDelivered.get(node) ?? 0)), 0),
      adversaryGrants: adversaries.length * STARTING_GRANT,
      adversaryRequesters: adversaries.length,
      forkersDistrusted: forkers.filter(forker => this.vantages.every(vantage => vantage.isForker(forker.signer.peerId))).length,
      forkersThatForked: forkers.filter(forker => forker.usingFork).length,
      forkers: forkers.length,
      balanceSum: ledgers.reduce((sum, ledger) => sum + ledger.balance().balance, 0),
      grantSum: ledgers.length * STARTING_GRANT,
      receipts: this.receipts,
      eigenTrustRuns: this.eigenTrustRuns
    }
  }
}

function resourcesFor (cpuSeconds: number): ReceiptBody['resources'] {
  return { cpuSeconds, wallSeconds: cpuSeconds, peakMemoryBytes: 0, agentInputTokens: 0, agentOutputTokens: 0, agentCostUsd: 0 }
}

async function openMemoryLedger (signer: Signer, clock: () => number): Promise<Ledger> {
  const database = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  await database.open()
  return await Ledger.open({ database, signer, location: 'memory', clock })
}

function shuffle<T> (items: T[], random: () => number): void {
  for (let index = items.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1))
    const swap = items[index]!
    items[index] = items[other]!
    items[other] = swap
  }
}

export type { StageOutcome }
