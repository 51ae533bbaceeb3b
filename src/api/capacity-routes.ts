import type { CapacityRecord } from '../dht/capacity-record.js'
import type { SeenRecord } from '../dht/discovery.js'
import type { ApiApp } from './server.js'

export interface CapacityRouteSource {
  ownRecord: () => CapacityRecord | undefined
  seenRecords: () => SeenRecord[]
  refresh: (signal: AbortSignal) => Promise<void>
}

/** A capacity record as JSON: keys and hashes in hex, times as ISO strings. */
export interface CapacityRecordJson {
  peerId: string
  seq: number
  issuedAt: string
  expiresAt: string
  cpus: { free: number, total: number }
  memory: { freeBytes: number, totalBytes: number }
  runtime: { name: string, isolation: string }
  images: string[]
  agents: string[]
  arch: string
  price: CapacityRecord['price']
  encryptionKey: string
  receiptHead: { seq: number, hash: string } | null
  addresses: string[]
}

export interface CapacityResponse {
  self: CapacityRecordJson | null
  network: {
    providers: Array<CapacityRecordJson & { fetchedAt: string, rttMs: number }>
    totals: { providers: number, freeCpus: number, totalCpus: number, freeMemoryBytes: number, totalMemoryBytes: number }
  }
}

const REFRESH_TIMEOUT_MS = 5_000

export function capacityRecordToJson (record: CapacityRecord): CapacityRecordJson {
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
  return {
    peerId: record.peerId,
    seq: record.seq,
    issuedAt: new Date(record.issuedAt).toISOString(),
    expiresAt: new Date(record.expiresAt).toISOString(),
    cpus: record.cpus,
    memory: record.memory,
    runtime: record.runtime,
    images: record.images,
    agents: record.agents,
    arch: record.arch,
    price: record.price,
    encryptionKey: hex(record.encryptionKey),
    receiptHead: record.receiptHead === null ? null : { seq: record.receiptHead.seq, hash: hex(record.receiptHead.hash) },
    addresses: record.addresses
  }
}

/**
 * `GET /api/v1/capacity`: this node's own record and the providers it has
 * seen lately. `?refresh=1` searches the network first (up to 5 s).
 */
export function registerCapacityRoutes (app: ApiApp, source: CapacityRouteSource): void {
  app.get<{ Querystring: { refresh?: string } }>('/api/v1/capacity', async (request): Promise<CapacityResponse> => {
    if (request.query.refresh === '1' || request.query.refresh === 'true') {
      await source.refresh(AbortSignal.timeout(REFRESH_TIMEOUT_MS))
    }

    const own = source.ownRecord()
    const providers = source.seenRecords().map(seen => ({
      ...capacityRecordToJson(seen.record),
      fetchedAt: new Date(seen.fetchedAt).toISOString(),
      rttMs: Math.round(seen.rttMs)
    }))
    return {
      self: own === undefined ? null : capacityRecordToJson(own),
      network: {
        providers,
        totals: {
          providers: providers.length,
          freeCpus: sum(providers.map(provider => provider.cpus.free)),
          totalCpus: sum(providers.map(provider => provider.cpus.total)),
          freeMemoryBytes: sum(providers.map(provider => provider.memory.freeBytes)),
          totalMemoryBytes: sum(providers.map(provider => provider.memory.totalBytes))
        }
      }
    }
  })
}

function sum (values: number[]): number {
  return values.reduce((total, value) => total + value, 0)
}
