import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { startTestNode, stopTestNode, waitFor } from '../support/nodes.js'
import type { EmdxNode } from '../../src/node/node.js'

async function startNetwork (size: number): Promise<EmdxNode[]> {
  const bootstrap = await startTestNode()
  const others = await Promise.all(Array.from({ length: size - 1 }, async () => await startTestNode({ bootstrap: bootstrap.addresses() })))
  return [bootstrap, ...others]
}

describe('private DHT', () => {
  it('fills every routing table from one bootstrap node', async () => {
    const nodes = await startNetwork(5)

    await waitFor(() => nodes.every(node => node.routingTableSize() > 0), 30_000, 'non-empty routing tables')

    for (const node of nodes) {
      expect(node.routingTableSize()).toBeGreaterThan(0)
    }
  })

  it('finds a provider record put by another node', async () => {
    const nodes = await startNetwork(5)
    await waitFor(() => nodes.every(node => node.routingTableSize() >= 2), 30_000, 'routing tables of at least 2 peers')
    const provider = nodes[1] as EmdxNode
    const seeker = nodes[4] as EmdxNode
    const key = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('emdx test capability')))

    for await (const _event of provider.libp2p.services.dht.provide(key, { signal: AbortSignal.timeout(20_000) })) {
      // Drain the query; it ends when the record is stored on the closest peers.
    }
    const found: string[] = []
    for await (const event of seeker.libp2p.services.dht.findProviders(key, { signal: AbortSignal.timeout(20_000) })) {
      if (event.name === 'PROVIDER') {
        found.push(...event.providers.map(peer => peer.id.toString()))
      }
    }

    expect(found).toContain(provider.peerId.toString())
  })

  it('speaks only the emdx DHT protocol', async () => {
    const node = await startTestNode()

    const protocols = node.libp2p.getProtocols()

    expect(protocols).toContain('/emdx/kad/1.0.0')
    expect(protocols.some(protocol => protocol.startsWith('/ipfs/kad/'))).toBe(false)
  })
})

describe('datastore', () => {
  it('keeps the peer store across a restart', async () => {
    const a = await startTestNode()
    const b = await startTestNode({ bootstrap: a.addresses() })
    await waitFor(() => b.libp2p.getPeers().length === 1, 20_000, 'b to connect to a')
    const dataDir = b.config.dataDir
    await stopTestNode(b)

    const restarted = await startTestNode({ dataDir })
    const known = await restarted.libp2p.peerStore.all()

    expect(known.map(peer => peer.id.toString())).toContain(a.peerId.toString())
  })
})
