import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import type { CapacityRecord, Isolation } from './capacity-record.js'

/**
 * A capability class: something a requester may need of a provider. Each
 * class is one DHT provider key (per shard), so a requester finds exactly the
 * peers that offer what its stage needs.
 */
export type CapabilityClass =
  | { kind: 'any' }
  | { kind: 'isolation', isolation: Isolation }
  | { kind: 'agent', agent: string }
  | { kind: 'arch', arch: string }

/**
 * Provider keys of one class are spread over this many shards. kad-dht's
 * findProviders stops after about 20 providers per key, so with 4 shards a
 * requester can see about 80 providers of a class. The same on every node,
 * because requesters query the shards that providers announce on.
 */
export const PROVIDER_SHARDS = 4

export function classLabel (capability: CapabilityClass): string {
  switch (capability.kind) {
    case 'any': return 'any'
    case 'isolation': return `isolation/${capability.isolation}`
    case 'agent': return `agent/${capability.agent}`
    case 'arch': return `arch/${capability.arch}`
  }
}

/** The classes a provider with this record announces itself under. */
export function classesOf (record: Pick<CapacityRecord, 'runtime' | 'agents' | 'arch'>): CapabilityClass[] {
  return [
    { kind: 'any' },
    { kind: 'isolation', isolation: record.runtime.isolation },
    ...record.agents.map(agent => ({ kind: 'agent' as const, agent })),
    { kind: 'arch', arch: record.arch }
  ]
}

/** The shard a provider announces on: stable for a peer, spread evenly over peers. */
export function shardOf (peerId: string): number {
  let hash = 0
  for (const char of peerId) {
    hash = (hash * 31 + char.charCodeAt(0)) >>> 0
  }
  return hash % PROVIDER_SHARDS
}

/** The DHT key of one shard of a class: a CID of `emdx/class/v1/<label>/<shard>`. */
export async function classKey (capability: CapabilityClass, shard: number): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(`emdx/class/v1/${classLabel(capability)}/${shard}`))
  return CID.createV1(raw.code, digest)
}

export async function classKeys (capability: CapabilityClass): Promise<CID[]> {
  return await Promise.all(Array.from({ length: PROVIDER_SHARDS }, async (_, shard) => await classKey(capability, shard)))
}
