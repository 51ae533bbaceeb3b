import { CAPACITY_KEY_PREFIX, CapacityRecordError, checkFreshness, openCapacityRecord } from './capacity-record.js'
import type { CapacityRecord } from './capacity-record.js'
import type { SelectFn, ValidateFn } from '@libp2p/kad-dht'

/**
 * The highest sequence number seen for each peer. The DHT validator only gets
 * one record at a time, so this is how it rejects a replay of a record older
 * than one it has already accepted.
 */
export class SequenceRegistry {
  private readonly highest = new Map<string, number>()
  private readonly maxPeers: number

  constructor (maxPeers = 100_000) {
    this.maxPeers = maxPeers
  }

  get (peerId: string): number | undefined {
    return this.highest.get(peerId)
  }

  /** Records a sequence number; returns false if a higher one was already seen. */
  observe (peerId: string, seq: number): boolean {
    const previous = this.highest.get(peerId)
    if (previous !== undefined && seq < previous) {
      return false
    }
    if (previous === undefined && this.highest.size >= this.maxPeers) {
      // Forget the oldest entry: the map stays bounded whatever peers send.
      const oldest = this.highest.keys().next().value
      if (oldest !== undefined) {
        this.highest.delete(oldest)
      }
    }
    this.highest.set(peerId, seq)
    return true
  }
}

export interface ValidatorInit {
  sequences: SequenceRegistry
  now?: () => number
}

/**
 * Checks a record stored under `/emdx/cap/<peer id>`, the only key of the
 * `emdx` namespace: signed by that peer, within the size limit, fresh
 * (allowing for clock skew), and not older than a record of the same peer
 * this node has already accepted.
 */
export function createCapacityValidator (init: ValidatorInit): ValidateFn {
  const now = init.now ?? Date.now
  return (key: Uint8Array, value: Uint8Array): void => {
    const peerId = peerIdOfKey(key)
    const record = openCapacityRecord(value)

    if (record.peerId !== peerId) {
      throw new CapacityRecordError(`capacity record under the key of ${peerId} is signed by ${record.peerId}`)
    }
    checkFreshness(record, now())
    if (!init.sequences.observe(record.peerId, record.seq)) {
      throw new CapacityRecordError(`capacity record of ${peerId} has sequence number ${record.seq}, older than ${init.sequences.get(peerId)} already seen`)
    }
  }
}

/**
 * Chooses the record with the highest sequence number; records that do not
 * decode lose. Returns the index of the chosen record, as kad-dht expects.
 */
export const selectCapacityRecord: SelectFn = (_key: Uint8Array, records: Uint8Array[]): number => {
  let best = 0
  let bestSeq = -1
  records.forEach((value, index) => {
    let record: CapacityRecord
    try {
      record = openCapacityRecord(value)
    } catch {
      return
    }
    if (record.seq > bestSeq) {
      best = index
      bestSeq = record.seq
    }
  })
  return best
}

function peerIdOfKey (key: Uint8Array): string {
  const text = new TextDecoder().decode(key)
  if (!text.startsWith(CAPACITY_KEY_PREFIX)) {
    throw new CapacityRecordError(`unknown key in the emdx namespace: ${text.slice(0, 80)}`)
  }
  const peerId = text.slice(CAPACITY_KEY_PREFIX.length)
  if (peerId.length === 0 || peerId.includes('/')) {
    throw new CapacityRecordError(`invalid capacity record key: ${text.slice(0, 80)}`)
  }
  return peerId
}
