import path from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Ledger } from '../credits/ledger.js'
import { createSigner } from '../records/signature.js'
import { Reputation } from '../reputation/reputation.js'
import { ReputationStore } from '../reputation/store.js'
import type { NodeConfig } from './config.js'
import type { RootDatabase } from './data-dir.js'
import type { EmdxLibp2p } from './libp2p.js'
import type { Logger } from './logger.js'
import type { PeerId } from '@libp2p/interface'

/**
 * Opens the credit ledger (which replays and checks the chain, so a corrupt
 * ledger stops the start) and the reputation, with the bootstrap peers as
 * EigenTrust's pre-trusted set, its saved local trust and the fork proofs
 * in the ledger.
 */
export async function openCredits (config: NodeConfig, database: RootDatabase, privateKey: Parameters<typeof createSigner>[0], logger: Logger): Promise<{ ledger: Ledger, reputation: Reputation, reputationStore: ReputationStore }> {
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  const ledger = await Ledger.open({
    database,
    signer: createSigner(privateKey, peerId),
    location: path.join(config.dataDir, 'db'),
    logger: logger.child({ component: 'ledger' })
  })

  const bootstrapPeers = config.bootstrap.flatMap(address => multiaddr(address).getComponents()
    .flatMap(component => component.name === 'p2p' && component.value !== undefined ? [component.value] : []))
  const reputationStore = new ReputationStore(database, logger.child({ component: 'reputation' }))
  const reputation = new Reputation({ self: peerId, bootstrapPeers, onLocalTrust: (peer, score, outcomes) => { reputationStore.save(peer, score, outcomes) } })
  await reputationStore.restore(reputation)
  for (const proof of await ledger.forkProofs()) {
    reputation.markForker(proof.owner)
  }
  return { ledger, reputation, reputationStore }
}

/** Connected peers that announced the protocol through identify. */
export async function peersWithProtocol (libp2p: EmdxLibp2p, protocol: string): Promise<PeerId[]> {
  const supporting: PeerId[] = []
  for (const peer of libp2p.getPeers()) {
    try {
      if ((await libp2p.peerStore.get(peer)).protocols.includes(protocol)) {
        supporting.push(peer)
      }
    } catch {
      // Not in the peer store yet, because identify has not finished. The next round tries again.
    }
  }
  return supporting
}
