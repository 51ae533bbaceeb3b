import { LevelDatastore } from 'datastore-level'
import { createCapacityValidator, selectCapacityRecord, SequenceRegistry } from '../dht/validator.js'
import { watchBootstrap } from './bootstrap-watch.js'
import { PortInUseError } from './errors.js'
import { createNetwork } from './libp2p.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EmdxLibp2p, NetworkInit } from './libp2p.js'
import type { Logger } from './logger.js'
import type { Ed25519PrivateKey } from '@libp2p/interface'

export type StopStep = () => Promise<void>

/**
 * Creates and starts the libp2p node on a datastore in the node's database,
 * with the capacity record validator and selector, peer logging and the
 * bootstrap watch; registers how to stop each part.
 */
export async function startLibp2p (config: NodeConfig, logger: Logger, database: RootDatabase, privateKey: Ed25519PrivateKey, stopSteps: StopStep[], metrics?: NetworkInit['metrics']): Promise<EmdxLibp2p> {
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
    selectors: { emdx: selectCapacityRecord },
    metrics
  })
  logPeerEvents(libp2p, logger.child({ component: 'network' }))
  await startNetwork(libp2p, config)
  stopSteps.push(async () => { await libp2p.stop() })
  const stopWatching = watchBootstrap(libp2p, config.bootstrap, logger.child({ component: 'bootstrap' }))
  stopSteps.push(async () => { stopWatching() })
  return libp2p
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
