import { LevelDatastore } from 'datastore-level'
import { startApiServer } from '../api/server.js'
import { registerStatusRoutes } from '../api/status-routes.js'
import { closeDatabase, openDatabase, prepareDataDir } from './data-dir.js'
import { PortInUseError } from './errors.js'
import { loadOrCreateIdentity } from './identity.js'
import { createNetwork } from './libp2p.js'
import { startSandbox } from './sandbox.js'
import { VERSION } from './version.js'
import type { ApiServer } from '../api/server.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { PeerId } from '@libp2p/interface'
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
}

type StopStep = () => Promise<void>

/**
 * The composition root: one emdx-node with its data directory, identity,
 * libp2p node and HTTP API. `start` builds the parts in order and, when one
 * fails, stops the ones already started, so a failed start leaves nothing open.
 */
export class EmdxNode {
  readonly config: NodeConfig
  readonly libp2p: EmdxLibp2p
  readonly database: RootDatabase
  readonly api: ApiServer
  readonly startedAt: Date
  /** The node's sandbox: its executor when it can share, and the facts `status` reports. */
  readonly sandbox: NodeSandbox
  private readonly logger: Logger
  private readonly stopSteps: StopStep[]
  private stopping?: Promise<void>

  private constructor (parts: { config: NodeConfig, logger: Logger, libp2p: EmdxLibp2p, database: RootDatabase, api: ApiServer, sandbox: NodeSandbox, stopSteps: StopStep[] }) {
    this.config = parts.config
    this.sandbox = parts.sandbox
    this.logger = parts.logger
    this.libp2p = parts.libp2p
    this.database = parts.database
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

      // datastore-level types its argument as a whole Level; a sublevel has the same API.
      const sublevel = database.sublevel<string, Uint8Array>('libp2p', { keyEncoding: 'utf8', valueEncoding: 'view' })
      const datastore = new LevelDatastore(sublevel as unknown as ConstructorParameters<typeof LevelDatastore>[0])
      await datastore.open()
      stopSteps.push(async () => { await datastore.close() })

      const libp2p = await createNetwork({
        privateKey: identity.privateKey,
        datastore,
        listenHost: config.listenHost,
        port: config.port,
        bootstrap: config.bootstrap,
        mdns: config.mdns
      })
      logPeerEvents(libp2p, init.logger.child({ component: 'network' }))
      await startNetwork(libp2p, config)
      stopSteps.push(async () => { await libp2p.stop() })

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
        }
      })
      stopSteps.push(async () => { await api.close() })

      node = new EmdxNode({ config, logger, libp2p, database, api, sandbox, stopSteps })
      logger.info({ peer: libp2p.peerId.toString(), api: api.url, sandbox: sandbox.info.backend }, 'node started')
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
