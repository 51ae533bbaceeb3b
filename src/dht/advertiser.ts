import { capacityKey, PROTOCOL_VERSION, signCapacityRecord } from './capacity-record.js'
import { classesOf, classKey, classLabel, shardOf } from './classes.js'
import type { CapacityRecord, Isolation, Runtime } from './capacity-record.js'
import type { CapabilityClass } from './classes.js'
import type { Price } from '../credits/receipt.js'
import type { Logger } from '../node/logger.js'
import type { Signer } from '../records/signature.js'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** The capacity a sharing node offers right now; the executor keeps it current. */
export interface CapacitySnapshot {
  cpus: { free: number, total: number }
  memory: { freeBytes: number, totalBytes: number }
  runtime: { name: Runtime, isolation: Isolation }
  images: string[]
  agents: string[]
  arch: string
  price: Price
}

export interface AdvertiserInit {
  libp2p: Libp2p<{ dht: KadDHT }>
  signer: Signer
  logger: Logger
  encryptionKey: Uint8Array
  /** The current capacity, or undefined while this node shares nothing. */
  capacity: () => CapacitySnapshot | undefined
  receiptHead: () => CapacityRecord['receiptHead']
  /** The last sequence number issued, so that numbers keep growing across restarts. */
  loadSeq: () => Promise<number>
  saveSeq: (seq: number) => Promise<void>
  timing?: Partial<AdvertiserTiming>
  now?: () => number
}

export interface AdvertiserTiming {
  /** How long a record is valid. */
  recordTtlMs: number
  /** A fresh record is published this long before the current one expires. */
  refreshBeforeExpiryMs: number
  /** Capacity changes closer together than this are published once. */
  debounceMs: number
  /** Time allowed for one DHT put or provide. */
  publishTimeoutMs: number
  /** First wait before retrying a publish that reached no peer; it doubles up to 60 s. */
  retryMs: number
}

/**
 * Defaults: a record lives 10 minutes and is refreshed after 5; a capacity
 * change is visible through the direct query at once and in the DHT after the
 * 1 s debounce plus one put.
 */
export const DEFAULT_ADVERTISER_TIMING: AdvertiserTiming = {
  recordTtlMs: 10 * 60_000,
  refreshBeforeExpiryMs: 5 * 60_000,
  debounceMs: 1_000,
  publishTimeoutMs: 30_000,
  retryMs: 2_000
}

/** A CPU share smaller than this is too little to run a stage: the node counts as full. */
export const MIN_FREE_CPUS = 0.1

/**
 * Announces this node's capacity: a signed record under `/emdx/cap/<peer id>`
 * and a provider record for each capability class it offers, on its shard.
 * It republishes when capacity changes and before the record expires, and
 * withdraws its provider records when it is full or stops sharing.
 *
 * kad-dht cannot delete provider records held by other peers: withdrawing
 * stops reproviding them (they lapse after their validity) and publishes a
 * record with no free capacity, which requesters read through the direct
 * query and skip.
 */
export class CapacityAdvertiser {
  private readonly init: AdvertiserInit
  private readonly timing: AdvertiserTiming
  private readonly logger: Logger
  private readonly now: () => number
  private signed?: Uint8Array
  private record?: CapacityRecord
  private seq = 0
  private provided = new Map<string, CID>()
  private debounceTimer?: NodeJS.Timeout
  private refreshTimer?: NodeJS.Timeout
  private retryTimer?: NodeJS.Timeout
  private retryDelayMs: number
  private publishing?: Promise<void>
  private publishAgain = false
  private controller = new AbortController()
  private stopped = false
  private reachedPeers = false
  private readonly onPeerConnect = (): void => {
    // The first peer makes a record that reached nobody worth publishing now.
    if (!this.reachedPeers) {
      this.publishSoon(this.timing.debounceMs)
    }
  }

  constructor (init: AdvertiserInit) {
    this.init = init
    this.timing = { ...DEFAULT_ADVERTISER_TIMING, ...init.timing }
    this.logger = init.logger
    this.now = init.now ?? Date.now
    this.retryDelayMs = this.timing.retryMs
  }

  async start (): Promise<void> {
    this.seq = await this.init.loadSeq()
    this.issueRecord()
    this.init.libp2p.addEventListener('peer:connect', this.onPeerConnect)
    this.publishSoon(0)
  }

  /** The current signed record, served by the direct capacity query. */
  currentRecord (): Uint8Array | undefined {
    return this.signed
  }

  currentCapacityRecord (): CapacityRecord | undefined {
    return this.record
  }

  /** Tells the advertiser that free capacity changed; publishes after the debounce. */
  capacityChanged (): void {
    if (this.stopped) {
      return
    }
    this.issueRecord()
    this.publishSoon(this.timing.debounceMs)
  }

  /**
   * Stops reproviding and stops all timers. Peers learn that the node is gone
   * when their direct query fails to dial it.
   */
  async stop (): Promise<void> {
    if (this.stopped) {
      return
    }
    this.stopped = true
    this.init.libp2p.removeEventListener('peer:connect', this.onPeerConnect)
    clearTimeout(this.debounceTimer)
    clearTimeout(this.refreshTimer)
    clearTimeout(this.retryTimer)
    this.controller.abort()
    await this.publishing?.catch(() => {})
    await this.withdrawProviders()
  }

  private issueRecord (): void {
    const capacity = this.init.capacity()
    if (capacity === undefined) {
      this.signed = undefined
      this.record = undefined
      return
    }

    const now = this.now()
    this.seq = Math.max(this.seq + 1, now)
    const record: CapacityRecord = {
      version: PROTOCOL_VERSION,
      peerId: this.init.signer.peerId,
      seq: this.seq,
      issuedAt: now,
      expiresAt: now + this.timing.recordTtlMs,
      cpus: capacity.cpus,
      memory: capacity.memory,
      runtime: capacity.runtime,
      images: capacity.images,
      agents: capacity.agents,
      arch: capacity.arch,
      price: capacity.price,
      encryptionKey: this.init.encryptionKey,
      receiptHead: this.init.receiptHead(),
      addresses: this.init.libp2p.getMultiaddrs().slice(0, 8).map(address => address.toString())
    }
    this.signed = signCapacityRecord(record, this.init.signer)
    this.record = record
  }

  private publishSoon (delayMs: number): void {
    clearTimeout(this.debounceTimer)
    this.debounceTimer = setTimeout(() => { this.publish() }, delayMs)
    this.debounceTimer.unref()
  }

  private publish (): void {
    if (this.stopped) {
      return
    }
    if (this.publishing !== undefined) {
      this.publishAgain = true
      return
    }
    this.publishing = this.publishOnce()
      .catch((err: unknown) => { this.logger.warn({ err }, 'failed to publish the capacity record') })
      .finally(() => {
        this.publishing = undefined
        if (this.publishAgain) {
          this.publishAgain = false
          this.publish()
        }
      })
  }

  private async publishOnce (): Promise<void> {
    // A new record for every publish, so that times, sequence number and
    // receipt head are current.
    this.issueRecord()
    const record = this.record
    const signed = this.signed

    if (record === undefined || signed === undefined || record.cpus.free < MIN_FREE_CPUS) {
      await this.withdrawProviders()
    }
    if (record === undefined || signed === undefined) {
      return
    }
    await this.init.saveSeq(record.seq)

    const accepted = await this.putRecord(signed)
    if (record.cpus.free >= MIN_FREE_CPUS) {
      await this.provideClasses(classesOf(record))
    }

    this.reachedPeers = accepted > 0
    if (accepted === 0) {
      this.logger.debug({ retryMs: this.retryDelayMs }, 'no peer stored the capacity record; retrying')
      this.scheduleRetry()
      return
    }
    this.retryDelayMs = this.timing.retryMs
    this.logger.debug({ seq: record.seq, freeCpus: record.cpus.free, peers: accepted }, 'published the capacity record')
    this.scheduleRefresh()
  }

  private async putRecord (signed: Uint8Array): Promise<number> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.timing.publishTimeoutMs)])
    let accepted = 0
    try {
      for await (const event of this.init.libp2p.services.dht.put(capacityKey(this.init.signer.peerId), signed, { signal })) {
        // Responses to the FIND_NODE steps of the query come through here too.
        if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE') {
          accepted++
        } else if (event.name === 'QUERY_ERROR') {
          this.logger.debug({ peer: event.from.toString(), err: event.error }, 'a peer did not store the capacity record')
        }
      }
    } catch (err) {
      if (!this.stopped) {
        this.logger.debug({ err }, 'capacity record put ended early')
      }
    }
    return accepted
  }

  private async provideClasses (classes: CapabilityClass[]): Promise<void> {
    const shard = shardOf(this.init.signer.peerId)
    await Promise.all(classes.map(async capability => {
      const label = classLabel(capability)
      const key = await classKey(capability, shard)
      const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.timing.publishTimeoutMs)])
      try {
        for await (const _event of this.init.libp2p.services.dht.provide(key, { signal })) {
          // Drain the query; provide() stores the provider record on the closest peers.
        }
        this.provided.set(label, key)
      } catch (err) {
        if (!this.stopped) {
          this.logger.debug({ class: label, err }, 'failed to provide a capability class')
        }
      }
    }))
  }

  private async withdrawProviders (): Promise<void> {
    const keys = [...this.provided.values()]
    this.provided.clear()
    await Promise.all(keys.map(async key => {
      await this.init.libp2p.services.dht.cancelReprovide(key).catch(() => {})
    }))
  }

  private scheduleRefresh (): void {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = setTimeout(() => { this.publish() }, this.timing.recordTtlMs - this.timing.refreshBeforeExpiryMs)
    this.refreshTimer.unref()
  }

  private scheduleRetry (): void {
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => { this.publish() }, this.retryDelayMs)
    this.retryTimer.unref()
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, 60_000)
  }
}
