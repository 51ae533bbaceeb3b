import type { CapacitySnapshot } from '../../src/dht/advertiser.js'
import type { CapacitySource } from '../../src/node/node.js'

/** A fixed capacity for benchmark nodes, which run no stages. */
export function staticCapacity (): CapacitySource {
  const snapshot: CapacitySnapshot = {
    cpus: { free: 2, total: 2 },
    memory: { freeBytes: 2 * 1024 ** 3, totalBytes: 2 * 1024 ** 3 },
    runtime: { name: 'runc', isolation: 'container' },
    images: ['emdx-test:latest'],
    agents: ['claude'],
    arch: process.arch,
    price: { perCpuSecond: 10, perGibSecond: 2, perThousandTokens: 5 }
  }
  return { snapshot: () => snapshot, onChange: () => {} }
}
