import path from 'node:path'
import { registerCapacityRoutes } from '../api/capacity-routes.js'
import { registerCascadeRoutes } from '../api/cascade-routes.js'
import { registerCreditsRoutes } from '../api/credits-routes.js'
import { registerRunRoutes } from '../api/run-routes.js'
import { startApiServer } from '../api/server.js'
import { registerStatusRoutes } from '../api/status-routes.js'
import { Discovery } from '../dht/discovery.js'
import { Git } from '../git/git.js'
import { NodeMetrics } from '../metrics/node-metrics.js'
import { createSigner } from '../records/signature.js'
import { FORK_PROOF_PROTOCOL, ForkProofGossip } from '../reputation/fork-gossip.js'
import { TRUST_PROTOCOL, TrustExchange } from '../reputation/trust-protocol.js'
import { JobRegistry } from '../stage/job-registry.js'
import { RepositoryStageRunner, WorkspaceCollectors } from '../stage/repository-runner.js'
import { openCredits, peersWithProtocol } from './credits-parts.js'
import { closeDatabase, openDatabase, prepareDataDir } from './data-dir.js'
import { loadOrCreateEncryptionKey, loadOrCreateIdentity } from './identity.js'
import { startLibp2p } from './network-parts.js'
import { registerObservability } from './observability.js'
import { startRequesting } from './requesting.js'
import { startSandbox } from './sandbox.js'
import { startSharing } from './sharing.js'
import { VERSION } from './version.js'
import type { ApiServer } from '../api/server.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { Ledger } from '../credits/ledger.js'
import type { CapacityAdvertiser, AdvertiserTiming } from '../dht/advertiser.js'
import type { SandboxInfo } from '../exec/types.js'
import type { Signer } from '../records/signature.js'
import type { Reputation } from '../reputation/reputation.js'
import type { SpotCheckOptions } from '../reputation/spot-check.js'
import type { ExecutorService } from '../stage/executor-service.js'
import type { CapacityLeases } from '../stage/leases.js'
import type { StageRunner } from '../stage/runner.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EncryptionKeyPair } from './identity.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { StopStep } from './network-parts.js'
import type { Requesting } from './requesting.js'
import type { NodeSandbox } from './sandbox.js'
import type { CapacitySource } from './sharing.js'
import type { PeerId } from '@libp2p/interface'

export type { CapacitySource } from './sharing.js'

/** What `GET /api/v1/status` returns. */
export interface NodeStatus {
  version: string
  peerId: string
  addresses: string[]
  apiUrl: string
  startedAt: string
  uptimeSeconds: number
  connectedPeers: number
  routingTableSize: number
  share: {
    enabled: boolean
    cpus: number
    memoryBytes: number
    /** CPUs and memory not leased to running stages. */
    freeCpus: number
    freeMemoryBytes: number
    runningStages: number
  }
  /** The sandbox stages run in; backend `none` means this node shares nothing. */
  sandbox: SandboxInfo
}

/** One entry of `GET /api/v1/peers`: a peer this node has an open connection to. */
export interface PeerSummary {
  peerId: string
  addresses: string[]
  direction: 'inbound' | 'outbound'
  connectedSince: string
  protocols: string[]
}

export interface NodeInit {
  config: NodeConfig
  logger: Logger
  /** Host of the HTTP API; loopback unless an API key protects it. */
  apiHost?: string
  /**
   * A capacity to advertise in place of the sandbox's, for tests of the
   * DHT that run no stages.
   */
  capacity?: CapacitySource
  /** Timing of capacity advertising; tests shorten it. */
  advertiserTiming?: Partial<AdvertiserTiming>
  /**
   * Runs this node's stages in place of its sandbox, for tests of the stage
   * protocol and cascades that are not about the sandbox.
   */
  runner?: StageRunner
  /** Starts no sandbox (the node then shares nothing unless `runner` is given); tests that are not about the sandbox set it. */
  skipSandbox?: boolean
  /**
   * Spot-check settings beyond `--spot-check-share`; tests whose scripted
   * runners cannot run canaries turn probation off with `probationChecks: 0`.
   */
  spotChecks?: Omit<SpotCheckOptions, 'share'>
}

/** The parts of a running node, built in order by `EmdxNode.start`. */
interface NodeParts {
  config: NodeConfig
  logger: Logger
  database: RootDatabase
  signer: Signer
  encryptionKey: EncryptionKeyPair
  libp2p: EmdxLibp2p
  discovery: Discovery
  ledger: Ledger
  reputation: Reputation
  trustExchange: TrustExchange
  forkProofs: ForkProofGossip
  sandbox: NodeSandbox
  runner?: StageRunner
  advertiser?: CapacityAdvertiser
  leases?: CapacityLeases
  executor?: ExecutorService
  requesting: Requesting
  api: ApiServer
  stopSteps: StopStep[]
}

/**
 * The composition root: one emdx-node with its data directory, identity,
 * libp2p node, ledger and reputation, sandbox, the executor and requester
 * sides of the stage protocol, cascades and the HTTP API. `start` builds the
 * parts in order and, when one fails, stops the ones already started, so a
 * failed start leaves nothing open.
 */
export class EmdxNode {
  readonly config: NodeConfig
  readonly libp2p: EmdxLibp2p
  readonly database: RootDatabase
  readonly signer: Signer
  readonly encryptionKey: EncryptionKeyPair
  readonly discovery: Discovery
  readonly ledger: Ledger
  readonly reputation: Reputation
  readonly trustExchange: TrustExchange
  /** Shares fork proofs with peers and takes theirs. */
  readonly forkProofs: ForkProofGossip
  /** The node's sandbox: its executor when it can share, and the facts `status` reports. */
  readonly sandbox: NodeSandbox
  /** Runs stages here: the sandbox with git checkouts, or the runner a test passed. */
  readonly runner?: StageRunner
  readonly advertiser?: CapacityAdvertiser
  readonly leases?: CapacityLeases
  readonly executor?: ExecutorService
  readonly requesting: Requesting
  readonly api: ApiServer
  readonly startedAt: Date
  private readonly logger: Logger
  private readonly stopSteps: StopStep[]
  private stopping?: Promise<void>

  private constructor (parts: NodeParts) {
    this.config = parts.config
    this.logger = parts.logger
    this.database = parts.database
    this.signer = parts.signer
    this.encryptionKey = parts.encryptionKey
    this.libp2p = parts.libp2p
    this.discovery = parts.discovery
    this.ledger = parts.ledger
    this.reputation = parts.reputation
    this.trustExchange = parts.trustExchange
    this.forkProofs = parts.forkProofs
    this.sandbox = parts.sandbox
    this.runner = parts.runner
    this.advertiser = parts.advertiser
    this.leases = parts.leases
    this.executor = parts.executor
    this.requesting = parts.requesting
    this.api = parts.api
    this.stopSteps = parts.stopSteps
    this.startedAt = new Date()
  }

  static async start (init: NodeInit): Promise<EmdxNode> {
    const { config } = init
    const logger = init.logger.child({ component: 'node' })
    const stopSteps: StopStep[] = []

    try {
      await prepareDataDir(config.dataDir)
      const database = await openDatabase(config.dataDir)
      stopSteps.push(async () => { await closeDatabase(config.dataDir, database) })

      const identity = await loadOrCreateIdentity(config.dataDir)
      if (identity.created) {
        logger.info({ file: identity.file }, 'created a new identity key')
      }
      const encryptionKey = await loadOrCreateEncryptionKey(config.dataDir)

      const { ledger, reputation, reputationStore } = await openCredits(config, database, identity.privateKey, init.logger)
      stopSteps.push(async () => { await ledger.close() })
      stopSteps.push(async () => { await reputationStore.flush() })

      const metrics = new NodeMetrics()
      const jobs = new JobRegistry()
      const libp2p = await startLibp2p(config, init.logger, database, identity.privateKey, stopSteps, metrics.libp2p())
      const signer = createSigner(identity.privateKey, libp2p.peerId.toString())
      const discovery = new Discovery({
        libp2p,
        logger: init.logger.child({ component: 'discovery' }),
        trust: { trust: (peer) => reputation.trustScore(peer), isExcluded: (peer) => reputation.isDistrusted(peer) }
      })
      stopSteps.push(async () => { await discovery.stop() })

      const forkProofs = new ForkProofGossip({
        libp2p,
        ledger,
        reputation,
        logger: init.logger.child({ component: 'fork-proofs' }),
        peers: async () => await peersWithProtocol(libp2p, FORK_PROOF_PROTOCOL)
      })
      await forkProofs.start()
      stopSteps.push(async () => { await forkProofs.stop() })
      const onForkProofs = (proofs: ForkProof[]): void => {
        for (const proof of proofs) {
          forkProofs.learn(proof).catch((err: unknown) => { logger.warn({ forker: proof.owner, err }, 'failed to store a fork proof') })
        }
      }

      const git = await Git.create({ logger: init.logger })
      stopSteps.push(async () => { await git.dispose() })

      // Also removes the containers and workspaces a killed run left behind.
      const collectors = new WorkspaceCollectors()
      const sandbox = init.skipSandbox === true
        ? skippedSandbox()
        : await startSandbox(config, libp2p.peerId.toString(), init.logger, collectors.collect)
      stopSteps.push(async () => { await sandbox.stop() })
      const baseRunner = init.runner ?? sandbox.executor
      const runner = baseRunner === undefined
        ? undefined
        : new RepositoryStageRunner({ runner: baseRunner, collectors, git, workDir: path.join(config.dataDir, 'checkouts'), logger: init.logger.child({ component: 'checkout' }) })

      const sharing = await startSharing({
        config,
        logger: init.logger,
        libp2p,
        signer,
        database,
        encryptionKey,
        ledger,
        reputation,
        onForkProofs,
        sandbox: sandbox.info,
        runner,
        capacity: init.capacity,
        advertiserTiming: init.advertiserTiming,
        jobs
      }, stopSteps)

      const requesting = await startRequesting({ config, logger: init.logger, libp2p, signer, encryptionKey, database, ledger, reputation, discovery, onForkProofs, runner, git, jobs, spotChecks: init.spotChecks }, stopSteps)

      const trustExchange = new TrustExchange({ libp2p, reputation, signer, logger: init.logger.child({ component: 'trust' }) })
      await trustExchange.start()
      trustExchange.startRounds(async () => await peersWithProtocol(libp2p, TRUST_PROTOCOL))
      stopSteps.push(async () => { await trustExchange.stop() })

      let node: EmdxNode | undefined
      const api = await startApiServer({
        host: init.apiHost ?? '127.0.0.1',
        port: config.apiPort,
        logger: init.logger.child({ component: 'api' }),
        register: (app) => {
          registerStatusRoutes(app, {
            status: () => requireStarted(node).status(),
            peers: async () => await requireStarted(node).peers()
          })
          registerCapacityRoutes(app, {
            ownRecord: () => sharing?.advertiser.currentCapacityRecord(),
            seenRecords: () => discovery.seenRecords(),
            refresh: async (signal) => { await requireStarted(node).refreshNetworkView(signal) }
          })
          registerCreditsRoutes(app, () => requireStarted(node))
          registerCascadeRoutes(app, { cascades: requesting.cascades, events: requesting.events, documents: requesting.documents })
          registerRunRoutes(app, { dispatcher: requesting.dispatcher, runner, images: config.images.map(image => image.name) })
          registerObservability(app, { node: () => requireStarted(node), discovery, ledger, reputation, jobs, cascades: requesting.cascades, events: requesting.events, metrics, logger: init.logger.child({ component: 'dashboard' }) })
        }
      })
      stopSteps.push(async () => { await api.close() })

      node = new EmdxNode({
        config,
        logger,
        database,
        signer,
        encryptionKey,
        libp2p,
        discovery,
        ledger,
        reputation,
        trustExchange,
        forkProofs,
        sandbox,
        runner,
        advertiser: sharing?.advertiser,
        leases: sharing?.leases,
        executor: sharing?.executor,
        requesting,
        api,
        stopSteps
      })
      const resumed = await requesting.cascades.resume()
      logger.info({ peer: signer.peerId, api: api.url, sharing: sharing !== undefined, sandbox: sandbox.info.backend, resumedCascades: resumed }, 'node started')
      return node
    } catch (err) {
      await runStopSteps(stopSteps, logger)
      throw err
    }
  }

  get peerId (): PeerId {
    return this.libp2p.peerId
  }

  /** Listen addresses with the peer id, ready to pass to `--bootstrap`. */
  addresses (): string[] {
    return this.libp2p.getMultiaddrs().map(address => address.toString())
  }

  routingTableSize (): number {
    const dht = this.libp2p.services.dht as unknown as { routingTable?: { size: number } }
    return dht.routingTable?.size ?? 0
  }

  status (): NodeStatus {
    const uptimeMs = Date.now() - this.startedAt.getTime()
    return {
      version: VERSION,
      peerId: this.peerId.toString(),
      addresses: this.addresses(),
      apiUrl: this.api.url,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.floor(uptimeMs / 1000),
      connectedPeers: this.libp2p.getPeers().length,
      routingTableSize: this.routingTableSize(),
      share: {
        enabled: this.executor !== undefined,
        cpus: this.config.shareCpu,
        memoryBytes: this.config.shareMem,
        freeCpus: this.leases?.free().cpus ?? 0,
        freeMemoryBytes: this.leases?.free().memoryBytes ?? 0,
        runningStages: this.leases?.active().length ?? 0
      },
      sandbox: this.sandbox.info
    }
  }

  async peers (): Promise<PeerSummary[]> {
    const byPeer = new Map<string, PeerSummary>()
    for (const connection of this.libp2p.getConnections()) {
      const peerId = connection.remotePeer.toString()
      const summary = byPeer.get(peerId) ?? {
        peerId,
        addresses: [],
        direction: connection.direction,
        connectedSince: new Date(connection.timeline.open).toISOString(),
        protocols: []
      }
      summary.addresses.push(connection.remoteAddr.toString())
      byPeer.set(peerId, summary)
    }

    for (const summary of byPeer.values()) {
      summary.protocols = await this.emdxProtocols(summary.peerId)
    }
    return [...byPeer.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** The emdx protocols a peer announced through identify, from the peer store. */
  private async emdxProtocols (peerId: string): Promise<string[]> {
    const connection = this.libp2p.getConnections().find(candidate => candidate.remotePeer.toString() === peerId)
    if (connection === undefined) {
      return []
    }
    try {
      const peer = await this.libp2p.peerStore.get(connection.remotePeer)
      return peer.protocols.filter(protocol => protocol.startsWith('/emdx/')).sort()
    } catch {
      return []
    }
  }

  /**
   * Looks for providers of any class, so that the network view of the API
   * and the dashboard lists what the network offers now.
   */
  async refreshNetworkView (signal: AbortSignal): Promise<void> {
    await this.discovery.find({ cpus: 0, memoryBytes: 0 }, { count: Number.MAX_SAFE_INTEGER, signal, fresh: true })
  }

  /** Stops every part in reverse order of starting; safe to call twice. */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('stopping node')
      await runStopSteps(this.stopSteps, this.logger)
      this.logger.info('node stopped')
    })()
    await this.stopping
  }
}

function skippedSandbox (): NodeSandbox {
  return { info: { backend: 'none', runtime: 'none', isolation: 'none', reason: 'the sandbox was not started' }, stop: async () => {} }
}

function requireStarted (node: EmdxNode | undefined): EmdxNode {
  if (node === undefined) {
    throw new Error('the node is still starting')
  }
  return node
}

async function runStopSteps (steps: StopStep[], logger: Logger): Promise<void> {
  while (steps.length > 0) {
    const step = steps.pop()
    try {
      await step?.()
    } catch (err) {
      logger.warn({ err }, 'a part of the node failed to stop cleanly')
    }
  }
}
