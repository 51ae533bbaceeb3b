import type { CapacitySnapshot } from '../../src/dht/advertiser.js'
import type { CapacitySource } from '../../src/node/node.js'

/**
 * A capacity source the test sets by hand. It stands in for the sandbox
 * executor, which the DHT tests are not about.
 */
export class ManualCapacity implements CapacitySource {
  private current: CapacitySnapshot
  private readonly listeners: Array<() => void> = []

  constructor (overrides: Partial<CapacitySnapshot> = {}) {
    this.current = { ...defaultSnapshot(), ...overrides }
  }

  snapshot (): CapacitySnapshot {
    return this.current
  }

  onChange (listener: () => void): void {
    this.listeners.push(listener)
  }

  set (changes: Partial<CapacitySnapshot>): void {
    this.current = { ...this.current, ...changes }
    this.listeners.forEach(listener => { listener() })
  }
}

export function defaultSnapshot (): CapacitySnapshot {
  return {
    cpus: { free: 2, total: 2 },
    memory: { freeBytes: 2 * 1024 ** 3, totalBytes: 2 * 1024 ** 3 },
    runtime: { name: 'runc', isolation: 'container' },
    images: ['emdx-test:latest'],
    agents: ['claude'],
    arch: 'x64',
    price: { perCpuSecond: 10, perGibSecond: 2, perThousandTokens: 5 }
  }
}
