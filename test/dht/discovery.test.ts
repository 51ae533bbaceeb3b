import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { capacityKey, MAX_CAPACITY_RECORD_BYTES, openCapacityRecord, PROTOCOL_VERSION, signCapacityRecord } from '../../src/dht/capacity-record.js'
import { queryCapacity } from '../../src/dht/capacity-protocol.js'
import { PROVIDER_SHARDS } from '../../src/dht/classes.js'
import { Discovery } from '../../src/dht/discovery.js'
import { encodeCanonical } from '../../src/records/canonical.js'
import { silentLogger } from '../../src/node/logger.js'
import { createSigner } from '../../src/records/signature.js'
import { ManualCapacity } from '../support/capacity.js'
import { startSharedNode, stopTestNode, waitFor } from '../support/nodes.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { Candidate, StageNeeds } from '../../src/dht/ranking.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { Signer } from '../../src/records/signature.js'

const fastAdvertising = { debounceMs: 200, retryMs: 200, publishTimeoutMs: 10_000 }
const agentStage: StageNeeds = { cpus: 1, memoryBytes: 512 * 1024 ** 2, agent: 'claude' }

interface TestNetwork {
  bootstrap: EmdxNode
  providers: Array<{ node: EmdxNode, capacity: ManualCapacity }>
  others: EmdxNode[]
  all: EmdxNode[]
}

/**
 * Starts a network on loopback: a bootstrap node, `providerCount` sharing
 * nodes and `otherCount` nodes that share nothing. Nodes here are started
 * as shared nodes, so that one network serves a whole describe block.
 */
async function startNetwork (providerCount: number, otherCount: number): Promise<TestNetwork> {
  const bootstrap = await startSharedNode({ share: false })
  const addresses = bootstrap.addresses()
  const providers = await Promise.all(Array.from({ length: providerCount }, async () => {
    const capacity = new ManualCapacity()
    const node = await startSharedNode({ bootstrap: addresses }, { capacity, advertiserTiming: fastAdvertising })
    return { node, capacity }
  }))
  const others = await Promise.all(Array.from({ length: otherCount }, async () => await startSharedNode({ bootstrap: addresses, share: false })))
  const all = [bootstrap, ...providers.map(provider => provider.node), ...others]

  await waitFor(() => all.every(node => node.routingTableSize() >= 2), 60_000, 'routing tables of at least 2 peers')
  return { bootstrap, providers, others, all }
}

async function stopNetwork (network: TestNetwork | undefined): Promise<void> {
  await Promise.all((network?.all ?? []).map(async node => { await stopTestNode(node) }))
}

/** Waits until a requester's discovery finds at least `count` providers. */
async function findAtLeast (requester: EmdxNode, needs: StageNeeds, count: number): ReturnType<EmdxNode['discovery']['find']> {
  let found: Awaited<ReturnType<EmdxNode['discovery']['find']>> = []
  await waitFor(async () => {
    found = await requester.discovery.find(needs, { count, signal: AbortSignal.timeout(10_000) })
    return found.length >= count
  }, 60_000, `${count} providers`)
  return found
}

describe('discovery in a 20-node network', () => {
  let network: TestNetwork | undefined

  beforeAll(async () => {
    network = await startNetwork(6, 13)
  }, 120_000)

  afterAll(async () => { await stopNetwork(network) }, 60_000)

  it('finds three providers with current records', async () => {
    const requester = network?.others[0] as EmdxNode
    const seqBefore = new Map(network?.providers.map(({ node }) => [node.peerId.toString(), node.advertiser?.currentCapacityRecord()?.seq ?? 0]))

    const found = await findAtLeast(requester, agentStage, 3)

    expect(network?.all).toHaveLength(20)
    expect(found.length).toBeGreaterThanOrEqual(3)
    for (const candidate of found) {
      const provider = network?.providers.find(entry => entry.node.peerId.toString() === candidate.peerId)
      expect(provider).toBeDefined()
      // Records are reissued at every republish, so the one fetched is at
      // least as new as the one the provider held before the search.
      expect(candidate.record.seq).toBeGreaterThanOrEqual(seqBefore.get(candidate.peerId) ?? Number.MAX_SAFE_INTEGER)
    }
  })

  it('shows a capacity change through the direct query at once', async () => {
    const requester = network?.others[1] as EmdxNode
    const provider = network?.providers[0] as TestNetwork['providers'][number]

    provider.capacity.set({ cpus: { free: 0.5, total: 2 } })
    const { record } = await queryCapacity(requester.libp2p, provider.node.peerId, { signal: AbortSignal.timeout(5000) })

    expect(record.cpus.free).toBe(0.5)
    provider.capacity.set({ cpus: { free: 2, total: 2 } })
  })

  it('shows a capacity change in the DHT after a republish', async () => {
    const requester = network?.others[2] as EmdxNode
    const provider = network?.providers[1] as TestNetwork['providers'][number]
    const key = capacityKey(provider.node.peerId.toString())

    provider.capacity.set({ cpus: { free: 1.5, total: 2 } })
    let stored: CapacityRecord | undefined
    await waitFor(async () => {
      try {
        for await (const event of requester.libp2p.services.dht.get(key, { signal: AbortSignal.timeout(5000) })) {
          if (event.name === 'VALUE') {
            stored = openCapacityRecord(event.value)
          }
        }
      } catch {
        // A query that times out has still reported the values it found.
      }
      return stored?.cpus.free === 1.5
    }, 20_000, 'the DHT copy to show 1.5 free CPUs')

    expect(stored?.cpus.free).toBe(1.5)
  })

  it('skips the DHT with enough recent providers', async () => {
    const requester = network?.others[4] as EmdxNode
    await findAtLeast(requester, agentStage, 5)
    const findProviders = vi.spyOn(requester.libp2p.services.dht, 'findProviders')
    try {
      const again = await requester.discovery.find(agentStage, { count: 3, signal: AbortSignal.timeout(10_000) })
      const callsWhenEnough = findProviders.mock.calls.length
      const wider = await requester.discovery.find(agentStage, { count: 100, signal: AbortSignal.timeout(10_000) })

      expect(again.length).toBeGreaterThanOrEqual(3)
      expect(callsWhenEnough).toBe(0)
      // Asked for more than it has seen, it walks the DHT again, once per shard.
      expect(findProviders.mock.calls.length).toBe(PROVIDER_SHARDS)
      expect(wider.length).toBeGreaterThanOrEqual(again.length)
    } finally {
      findProviders.mockRestore()
    }
  })

  it('reuses a finished walk', async () => {
    const requester = network?.others[5] as EmdxNode
    let now = Date.now()
    const discovery = new Discovery({ libp2p: requester.libp2p, logger: silentLogger(), now: () => now })
    const peersOf = (candidates: Candidate[]): string[] => candidates.map(candidate => candidate.peerId).sort()
    try {
      const all = await discovery.find(agentStage, { count: 100, signal: AbortSignal.timeout(10_000) })
      // From here on the DHT stays silent: a search that waited for it
      // would hang until the test times out.
      const findProviders = vi.spyOn(requester.libp2p.services.dht, 'findProviders').mockImplementation(async function * (_key, options) {
        await new Promise(resolve => { options?.signal?.addEventListener('abort', resolve, { once: true }) })
      })
      try {
        const soon = await discovery.find(agentStage, { count: 100, signal: AbortSignal.timeout(120_000) })
        const walksSoon = findProviders.mock.calls.length
        now += 4_000
        const later = await discovery.find(agentStage, { count: 100, signal: AbortSignal.timeout(120_000) })

        // The first walk ran to its end with fewer providers than requested,
        // so later searches take the providers seen as all there are.
        expect(all.length).toBeLessThan(100)
        expect(peersOf(soon)).toEqual(peersOf(all))
        expect(peersOf(later)).toEqual(peersOf(all))
        // Right after a walk no other starts. Seconds later one starts in the background.
        expect(walksSoon).toBe(0)
        expect(findProviders.mock.calls.length).toBe(PROVIDER_SHARDS)
      } finally {
        findProviders.mockRestore()
      }
    } finally {
      await discovery.stop()
    }
  }, 30_000)

  it('drops a provider that is full', async () => {
    const requester = network?.others[3] as EmdxNode
    const full = network?.providers[2] as TestNetwork['providers'][number]
    full.capacity.set({ cpus: { free: 0, total: 2 } })

    const found = await requester.discovery.find(agentStage, { count: 100, signal: AbortSignal.timeout(10_000) })

    expect(found.map(candidate => candidate.peerId)).not.toContain(full.node.peerId.toString())
    full.capacity.set({ cpus: { free: 2, total: 2 } })
  })
})

describe('stale provider records', () => {
  it('cost one failed dial each', async () => {
    const network = await startNetwork(5, 2)
    try {
      const requester = network.others[0] as EmdxNode
      await findAtLeast(requester, agentStage, 5)
      // A walk still under way could dial a provider stopped below, before
      // the count starts.
      await requester.discovery.backgroundWalksDone()
      const stale = network.providers.slice(0, 3)
      await Promise.all(stale.map(async provider => { await stopTestNode(provider.node) }))
      const staleIds = stale.map(provider => provider.node.peerId.toString())
      const dialsBefore = requester.discovery.stats.failedDials

      const first = await requester.discovery.find(agentStage, { count: 5, signal: AbortSignal.timeout(15_000) })
      const dialsAfterFirst = requester.discovery.stats.failedDials
      const second = await requester.discovery.find(agentStage, { count: 5, signal: AbortSignal.timeout(15_000) })

      expect(first.map(candidate => candidate.peerId).filter(id => staleIds.includes(id))).toEqual([])
      expect(first).toHaveLength(2)
      expect(dialsAfterFirst - dialsBefore).toBe(3)
      expect(requester.discovery.stats.failedDials).toBe(dialsAfterFirst)
      expect(requester.discovery.stats.skippedUnreachable).toBeGreaterThanOrEqual(3)
      expect(second).toHaveLength(2)
      for (const id of staleIds) {
        expect(requester.discovery.isUnreachable(id)).toBe(true)
      }
    } finally {
      await stopNetwork(network)
    }
  }, 120_000)
})

describe('capacity validator on the network', () => {
  let network: TestNetwork | undefined

  beforeAll(async () => {
    network = await startNetwork(0, 5)
  }, 60_000)

  afterAll(async () => { await stopNetwork(network) }, 60_000)

  function recordFor (node: EmdxNode, changes: Partial<CapacityRecord> = {}): CapacityRecord {
    const now = Date.now()
    return {
      version: PROTOCOL_VERSION,
      peerId: node.peerId.toString(),
      seq: now,
      issuedAt: now,
      expiresAt: now + 600_000,
      cpus: { free: 1, total: 1 },
      memory: { freeBytes: 1024 ** 3, totalBytes: 1024 ** 3 },
      runtime: { name: 'runc', isolation: 'container' },
      images: [],
      agents: [],
      arch: 'x64',
      price: { perCpuSecond: 1, perGibSecond: 1, perThousandTokens: 1 },
      encryptionKey: new Uint8Array(32),
      receiptHead: null,
      addresses: [],
      ...changes
    }
  }

  /** Puts a value under the node's own capacity key and counts the peers that stored it. */
  async function putOwnRecord (node: EmdxNode, value: Uint8Array): Promise<{ stored: number, rejected: number }> {
    let stored = 0
    let rejected = 0
    for await (const event of node.libp2p.services.dht.put(capacityKey(node.peerId.toString()), value, { signal: AbortSignal.timeout(15_000) })) {
      if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE') {
        stored++
      }
      if (event.name === 'QUERY_ERROR') {
        rejected++
      }
    }
    return { stored, rejected }
  }

  async function valuesSeenBy (node: EmdxNode, peer: EmdxNode): Promise<CapacityRecord[]> {
    const values: CapacityRecord[] = []
    try {
      for await (const event of node.libp2p.services.dht.get(capacityKey(peer.peerId.toString()), { signal: AbortSignal.timeout(5000) })) {
        if (event.name === 'VALUE') {
          values.push(openCapacityRecord(event.value))
        }
      }
    } catch {
      // No valid value anywhere ends the query with an error.
    }
    return values
  }

  async function otherSigner (): Promise<Signer> {
    const key = await generateKeyPair('Ed25519')
    return createSigner(key, peerIdFromPrivateKey(key).toString())
  }

  it('rejects a bad signature everywhere', async () => {
    const [writer, reader] = network?.others as [EmdxNode, EmdxNode]
    const body = encodeCanonical(recordFor(writer))
    const forged = encodeCanonical({ record: body, signature: new Uint8Array(64).fill(9) })

    const result = await putOwnRecord(writer, forged)

    expect(result.stored).toBe(0)
    expect(result.rejected).toBeGreaterThan(0)
    expect(await valuesSeenBy(reader, writer)).toEqual([])
  })

  it('rejects a record signed by a foreign key', async () => {
    const writer = network?.others[1] as EmdxNode
    const reader = network?.others[2] as EmdxNode
    const foreign = await otherSigner()
    const signed = signCapacityRecord({ ...recordFor(writer), peerId: foreign.peerId }, foreign)

    const result = await putOwnRecord(writer, signed)

    expect(result.stored).toBe(0)
    expect(result.rejected).toBeGreaterThan(0)
    expect(await valuesSeenBy(reader, writer)).toEqual([])
  })

  it('rejects a past expiry', async () => {
    const writer = network?.others[2] as EmdxNode
    const reader = network?.others[3] as EmdxNode
    const now = Date.now()
    const signed = signCapacityRecord(recordFor(writer, { issuedAt: now - 7_200_000, expiresAt: now - 3_600_000 }), writer.signer)

    const result = await putOwnRecord(writer, signed)

    expect(result.stored).toBe(0)
    expect(await valuesSeenBy(reader, writer)).toEqual([])
  })

  it('rejects an oversized record', async () => {
    const writer = network?.others[3] as EmdxNode
    const reader = network?.others[4] as EmdxNode
    const body = encodeCanonical({ ...recordFor(writer), padding: new Uint8Array(MAX_CAPACITY_RECORD_BYTES) })
    const oversized = encodeCanonical({ record: body, signature: writer.signer.sign('capacity-record', body) })

    const result = await putOwnRecord(writer, oversized)

    expect(result.stored).toBe(0)
    expect(await valuesSeenBy(reader, writer)).toEqual([])
  })

  it('rejects an older sequence number', async () => {
    const writer = network?.others[4] as EmdxNode
    const reader = network?.others[0] as EmdxNode
    const now = Date.now()
    const newer = await putOwnRecord(writer, signCapacityRecord(recordFor(writer, { seq: now + 10 }), writer.signer))

    const older = await putOwnRecord(writer, signCapacityRecord(recordFor(writer, { seq: now }), writer.signer))

    expect(newer.stored).toBeGreaterThan(0)
    expect(older.stored).toBe(0)
    expect(older.rejected).toBeGreaterThan(0)
    expect((await valuesSeenBy(reader, writer)).map(record => record.seq)).toEqual([now + 10])
  })
})
