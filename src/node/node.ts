import { LevelDatastore } from 'datastore-level'
import { registerCapacityRoutes } from '../api/capacity-routes.js'
import { startApiServer } from '../api/server.js'
import { registerStatusRoutes } from '../api/status-routes.js'
import { CapacityAdvertiser } from '../dht/advertiser.js'
import { serveCapacity } from '../dht/capacity-protocol.js'
import { Discovery } from '../dht/discovery.js'
import { createCapacityValidator, selectCapacityRecord, SequenceRegistry } from '../dht/validator.js'
import { registerCreditsRoutes } from '../api/credits-routes.js'
import { createSigner } from '../records/signature.js'
import { TRUST_PROTOCOL, TrustExchange } from '../reputation/trust-protocol.js'
import { watchBootstrap } from './bootstrap-watch.js'
import { openCredits, peersWithProtocol } from './credits-parts.js'
import { closeDatabase, openDatabase, prepareDataDir } from './data-dir.js'
import { PortInUseError } from './errors.js'
import { loadOrCreateEncryptionKey, loadOrCreateIdentity } from './identity.js'
import { createNetwork } from './libp2p.js'
import { startSandbox } from './sandbox.js'
import { VERSION } from './version.js'
import type { ApiServer } from '../api/server.js'
import type { Ledger } from '../credits/ledger.js'
import type { AdvertiserTiming, CapacitySnapshot } from '../dht/advertiser.js'
import type { Reputation } from '../reputation/reputation.js'
import type { Signer } from '../records/signature.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EncryptionKeyPair } from './identity.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { Ed25519PrivateKey, PeerId } from '@libp2p/interface'
import type { SandboxInfo } from '../exec/types.js'
import type { NodeSandbox } from './sandbox.js'

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
   * What this node offers the network right now. Undefined, or a source
   * that returns undefined, means the node shares nothing.
   */
  capacity?: CapacitySource
  /** Timing of capacity advertising; tests shorten it. */
  advertiserTiming?: Partial<AdvertiserTiming>
}

/** The current capacity of this node and a way to hear when it changes. */
export interface CapacitySource {
  snapshot: () => CapacitySnapshot | undefined
  onChange: (listener: () => void) => void
}

type StopStep = () => Promise<void>

/** The parts of a running node, built in order by `EmdxNode.start`. */
interface NodeParts {
  config: NodeConfig
  logger: Logger
  database: RootDatabase
  signer: Signer
  encryptionKey: EncryptionKeyPair
  libp2p: EmdxLibp2p
  discovery: Discovery
  advertiser?: CapacityAdvertiser
  ledger: Ledger
  reputation: Reputation
  trustExchange: TrustExchange
  sandbox: NodeSandbox
  api: ApiServer
  stopSteps: StopStep[]
}

/**
 * The composition root: one emdx-node with its data directory, identity,
 * libp2p node, capacity advertising and discovery, and HTTP API. `start`
 * builds the parts in order and, when one fails, stops the ones already
 * started, so a failed start leaves nothing open.
 */
export class EmdxNode {
  readonly config: NodeConfig
  readonly libp2p: EmdxLibp2p
  readonly database: RootDatabase
  readonly signer: Signer
  readonly encryptionKey: EncryptionKeyPair
  readonly discovery: Discovery
  readonly advertiser?: CapacityAdvertiser
  readonly ledger: Ledger
  readonly reputation: Reputation
  readonly trustExchange: TrustExchange
  readonly api: ApiServer
  readonly startedAt: Date
  /** The node's sandbox: its executor when it can share, and the facts `status` reports. */
  readonly sandbox: NodeSandbox
  private readonly logger: Logger
  private readonly stopSteps: StopStep[]
  private stopping?: Promise<void>

  private constructor (parts: NodeParts) {
    this.config = parts.config
    this.sandbox = parts.sandbox
    this.logger = parts.logger
    this.database = parts.database
    this.signer = parts.signer
    this.encryptionKey = parts.encryptionKey
    this.libp2p = parts.libp2p
    this.discovery = parts.discovery
    this.advertiser = parts.advertiser
    this.ledger = parts.ledger
    this.reputation = parts.reputation
    this.trustExchange = parts.trustExchange
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

      const libp2p = await startLibp2p(init, database, identity.privateKey, stopSteps)
      const signer = createSigner(identity.privateKey, libp2p.peerId.toString())

      const discovery = new Discovery({ libp2p, logger: init.logger.child({ component: 'discovery' }) })
      const advertiser = await startAdvertising(init, { libp2p, signer, database, encryptionKey }, stopSteps)

      const trustExchange = new TrustExchange({ libp2p, reputation, signer, logger: init.logger.child({ component: 'trust' }) })
      await trustExchange.start()
      trustExchange.startRounds(async () => await peersWithProtocol(libp2p, TRUST_PROTOCOL))
      stopSteps.push(async () => { await trustExchange.stop() })

      // Also removes the containers and workspaces a killed run left behind.
      const sandbox = await startSandbox(config, libp2p.peerId.toString(), init.logger)
      stopSteps.push(async () => { await sandbox.stop() })

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
            ownRecord: () => advertiser?.currentCapacityRecord(),
            seenRecords: () => discovery.seenRecords(),
            refresh: async (signal) => { await requireStarted(node).refreshNetworkView(signal) }
          })
          registerCreditsRoutes(app, () => requireStarted(node))
        }
      })
      stopSteps.push(async () => { await api.close() })

      node = new EmdxNode({ config, logger, database, signer, encryptionKey, libp2p, discovery, advertiser, ledger, reputation, trustExchange, sandbox, api, stopSteps })
      logger.info({ peer: signer.peerId, api: api.url, sharing: advertiser !== undefined, sandbox: sandbox.info.backend }, 'node started')
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
        enabled: this.config.share && this.sandbox.executor !== undefined,
        cpus: this.config.shareCpu,
        memoryBytes: this.config.shareMem
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
    await this.discovery.find({ cpus: 0, memoryBytes: 0 }, { count: Number.MAX_SAFE_INTEGER, signal })
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

async function startLibp2p (init: NodeInit, database: RootDatabase, privateKey: Ed25519PrivateKey, stopSteps: StopStep[]): Promise<EmdxLibp2p> {
  const { config } = init

  // datastore-level types its argument as a whole Level; a sublevel has the same API.
  const sublevel = database.sublevel<string, Uint8Array>('libp2p', { keyEncoding: 'utf8', valueEncoding: 'view' })
  const datastore = new LevelDatastore(sublevel as unknown as ConstructorParameters<typeof LevelDatastore>[0])
  await datastore.open()
  stopSteps.push(async () => { await datastore.close() })

  const sequences = new SequenceRegistry()
  const libp2p = await createNetwork({
    privateKey,
    datastore,
    listenHost: config.listenHost,
    port: config.port,
    bootstrap: config.bootstrap,
    mdns: config.mdns,
    validators: { emdx: createCapacityValidator({ sequences }) },
    selectors: { emdx: selectCapacityRecord }
  })
  logPeerEvents(libp2p, init.logger.child({ component: 'network' }))
  await startNetwork(libp2p, config)
  stopSteps.push(async () => { await libp2p.stop() })
  const stopWatching = watchBootstrap(libp2p, config.bootstrap, init.logger.child({ component: 'bootstrap' }))
  stopSteps.push(async () => { stopWatching() })
  return libp2p
}

const CAPACITY_SEQ_KEY = 'capacity-seq'

async function startAdvertising (
  init: NodeInit,
  parts: { libp2p: EmdxLibp2p, signer: Signer, database: RootDatabase, encryptionKey: EncryptionKeyPair },
  stopSteps: StopStep[]
): Promise<CapacityAdvertiser | undefined> {
  const logger = init.logger.child({ component: 'advertiser' })
  const capacity = init.capacity
  if (!init.config.share || capacity === undefined) {
    return undefined
  }

  const store = parts.database.sublevel<string, string>('dht', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  const advertiser = new CapacityAdvertiser({
    libp2p: parts.libp2p,
    signer: parts.signer,
    logger,
    encryptionKey: parts.encryptionKey.publicKey,
    capacity: () => capacity.snapshot(),
    // TODO: the head of this node's receipt chain, once the ledger exists.
    receiptHead: () => null,
    loadSeq: async () => Number(await store.get(CAPACITY_SEQ_KEY) ?? 0),
    saveSeq: async (seq) => { await store.put(CAPACITY_SEQ_KEY, String(seq)) },
    timing: init.advertiserTiming
  })
  capacity.onChange(() => { advertiser.capacityChanged() })

  const stopServing = await serveCapacity({ libp2p: parts.libp2p, logger, currentRecord: () => advertiser.currentRecord() })
  stopSteps.push(stopServing)
  await advertiser.start()
  stopSteps.push(async () => { await advertiser.stop() })
  return advertiser
}

function requireStarted (node: EmdxNode | undefined): EmdxNode {
  if (node === undefined) {
    throw new Error('the node is still starting')
  }
  return node
}

async function startNetwork (libp2p: EmdxLibp2p, config: NodeConfig): Promise<void> {
  try {
    await libp2p.start()
  } catch (err) {
    try {
      await libp2p.stop()
    } catch {
      // The start error below is the one worth reporting.
    }
    if (String((err as Error).message).includes('EADDRINUSE') || (err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new PortInUseError(config.port, `libp2p port ${config.port} on ${config.listenHost} is already in use; stop the process using it or pass --port with another port`, { cause: err })
    }
    throw err
  }
}

function logPeerEvents (libp2p: EmdxLibp2p, logger: Logger): void {
  libp2p.addEventListener('peer:connect', (event) => {
    logger.info({ peer: event.detail.toString() }, 'peer connected')
  })
  libp2p.addEventListener('peer:disconnect', (event) => {
    logger.info({ peer: event.detail.toString() }, 'peer disconnected')
  })
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
