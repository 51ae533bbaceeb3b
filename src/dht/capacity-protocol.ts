import { lpStream } from '@libp2p/utils'
import { CapacityRecordError, MAX_CAPACITY_RECORD_BYTES, checkFreshness, openCapacityRecord } from './capacity-record.js'
import type { CapacityRecord } from './capacity-record.js'
import type { Logger } from '../node/logger.js'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

/**
 * `/emdx/capacity/1.0.0`: the requester opens a stream and the provider writes
 * its current signed capacity record as one length-prefixed message, then
 * closes. It is fresher than the DHT copy, which is only republished now and
 * then.
 */
export const CAPACITY_PROTOCOL = '/emdx/capacity/1.0.0'

const WRITE_TIMEOUT_MS = 5_000

export interface CapacityServerInit {
  libp2p: Libp2p
  logger: Logger
  /** The current signed record, or undefined when this node does not share. */
  currentRecord: () => Uint8Array | undefined
}

/** Serves this node's record to peers that ask. */
export async function serveCapacity (init: CapacityServerInit): Promise<() => Promise<void>> {
  const logger = init.logger
  await init.libp2p.handle(CAPACITY_PROTOCOL, async (stream: Stream, connection) => {
    const peer = connection.remotePeer.toString()
    const record = init.currentRecord()
    if (record === undefined) {
      stream.abort(new Error('this node does not share capacity'))
      return
    }
    try {
      const messages = lpStream(stream, { maxDataLength: MAX_CAPACITY_RECORD_BYTES })
      await messages.write(record, { signal: AbortSignal.timeout(WRITE_TIMEOUT_MS) })
      await stream.close({ signal: AbortSignal.timeout(WRITE_TIMEOUT_MS) })
    } catch (err) {
      logger.debug({ peer, err }, 'failed to send the capacity record')
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 8, runOnLimitedConnection: false })

  return async () => { await init.libp2p.unhandle(CAPACITY_PROTOCOL) }
}

export interface QueriedRecord {
  record: CapacityRecord
  signed: Uint8Array
  /** Time from dialling to having the record: the round trip plus any dial. */
  elapsedMs: number
}

/**
 * Asks a peer for its current record and checks that the peer signed it, that
 * it names the peer we asked, and that it has not expired.
 */
export async function queryCapacity (libp2p: Libp2p, peer: PeerId, options: { signal: AbortSignal, now?: number }): Promise<QueriedRecord> {
  const started = performance.now()
  const stream = await libp2p.dialProtocol(peer, CAPACITY_PROTOCOL, { signal: options.signal })
  try {
    const messages = lpStream(stream, { maxDataLength: MAX_CAPACITY_RECORD_BYTES })
    const signed = (await messages.read({ signal: options.signal })).subarray()
    const record = openCapacityRecord(signed)
    if (record.peerId !== peer.toString()) {
      throw new CapacityRecordError(`peer ${peer.toString()} sent the capacity record of ${record.peerId}`)
    }
    checkFreshness(record, options.now ?? Date.now())
    await stream.close({ signal: options.signal }).catch(() => {})
    return { record, signed, elapsedMs: performance.now() - started }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
