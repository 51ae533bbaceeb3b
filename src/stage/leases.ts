/** A reservation of part of the shared capacity for one job. */
export interface Lease {
  jobId: string
  peerId: string
  cpus: number
  memoryBytes: number
  since: number
}

/**
 * The node's shared CPUs and memory and the leases taken on them. An offer is
 * accepted only if its lease fits; every exit path of a job releases it.
 */
export class CapacityLeases {
  readonly totalCpus: number
  readonly totalMemoryBytes: number
  private readonly leases = new Map<string, Lease>()
  private readonly listeners: Array<() => void> = []
  private readonly now: () => number

  constructor (init: { cpus: number, memoryBytes: number, now?: () => number }) {
    this.totalCpus = init.cpus
    this.totalMemoryBytes = init.memoryBytes
    this.now = init.now ?? Date.now
  }

  free (): { cpus: number, memoryBytes: number } {
    let cpus = this.totalCpus
    let memoryBytes = this.totalMemoryBytes
    for (const lease of this.leases.values()) {
      cpus -= lease.cpus
      memoryBytes -= lease.memoryBytes
    }
    // Rounding keeps sums of fractions such as 0.1 + 0.2 from showing as 0.30000000000000004.
    return { cpus: Math.max(0, Math.round(cpus * 1000) / 1000), memoryBytes: Math.max(0, memoryBytes) }
  }

  /** Reserves capacity for a job; undefined when it does not fit or the job already holds a lease. */
  tryReserve (jobId: string, peerId: string, cpus: number, memoryBytes: number): Lease | undefined {
    const free = this.free()
    if (this.leases.has(jobId) || cpus > free.cpus + 1e-9 || memoryBytes > free.memoryBytes) {
      return undefined
    }
    const lease: Lease = { jobId, peerId, cpus, memoryBytes, since: this.now() }
    this.leases.set(jobId, lease)
    this.notify()
    return lease
  }

  /** Releases a job's lease; releasing twice or a job without a lease does nothing. */
  release (jobId: string): void {
    if (this.leases.delete(jobId)) {
      this.notify()
    }
  }

  active (): Lease[] {
    return [...this.leases.values()]
  }

  activeFor (peerId: string): number {
    let count = 0
    for (const lease of this.leases.values()) {
      if (lease.peerId === peerId) {
        count++
      }
    }
    return count
  }

  onChange (listener: () => void): void {
    this.listeners.push(listener)
  }

  private notify (): void {
    for (const listener of this.listeners) {
      listener()
    }
  }
}
