/**
 * `/emdx/trust/1.0.0`: two peers swap their signed trust reports. The
 * dialer writes its report as one length-prefixed message, the listener
 * verifies it, keeps it and responds with its own, and both close. A report
 * must be signed by the peer at the other end of the connection, so that no
 * peer can push reports in another peer's name. A bad message resets the
 * stream and is counted; it never reaches the caller as an exception on the
 * listener's side.
 */
import { lpStream } from '@libp2p/utils'
import { EmdxError } from '../node/errors.js'
import { MAX_TRUST_REPORT_BYTES, decodeTrustReport } from './trust-report.js'
import type { Reputation } from './reputation.js'
import type { TrustReport } from './trust-report.js'
import type { Logger } from '../node/logger.js'
import type { Signer } from '../records/signature.js'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'

export const TRUST_PROTOCOL = '/emdx/trust/1.0.0'
/** Maximum message size: a report plus its signature and encoding. */
export const MAX_TRUST_MESSAGE_BYTES = MAX_TRUST_REPORT_BYTES + 256
/** Deadline for each read and write of an exchange. */
export const TRUST_EXCHANGE_TIMEOUT_MS = 10_000
/** A peer that requests another exchange sooner than this gets its stream reset. */
export const MIN_EXCHANGE_INTERVAL_MS = 60_000
/** How often a node swaps reports with its connected peers and recomputes global trust. */
export const EXCHANGE_ROUND_INTERVAL_MS = 10 * 60_000
/** Peers asked per round, at random among the connected ones. */
export const PEERS_PER_ROUND = 16

/** A trust exchange that failed: a bad or late message, or a report in another peer's name. */
export class TrustExchangeError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_TRUST_EXCHANGE', message, options)
  }
}

export interface TrustExchangeInit {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>
  reputation: Reputation
  signer: Signer
  logger: Logger
  timeoutMs?: number
  minIntervalMs?: number
  clock?: () => number
}

export class TrustExchange {
  /** Streams reset because of a bad, oversized, late or misattributed message. */
  badMessages = 0
  private readonly init: TrustExchangeInit
  private readonly lastInbound = new Map<string, number>()
  private timer?: NodeJS.Timeout

  constructor (init: TrustExchangeInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(TRUST_PROTOCOL, async (stream, connection) => {
      await this.serve(stream, connection)
    }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await this.init.libp2p.unhandle(TRUST_PROTOCOL)
  }

  /**
   * Every `intervalMs`, swaps reports with up to PEERS_PER_ROUND of the
   * peers that `peers` returns and recomputes global trust. Failures are
   * logged and the round goes on with the next peer.
   */
  startRounds (peers: () => Promise<PeerId[]>, intervalMs = EXCHANGE_ROUND_INTERVAL_MS): void {
    this.timer = setInterval(() => {
      peers().then(async (chosen) => { await this.runRound(chosen) }).catch((err: unknown) => {
        this.init.logger.warn({ err }, 'trust exchange round failed')
      })
    }, intervalMs)
    this.timer.unref()
  }

  /** Swaps reports with up to PEERS_PER_ROUND of the peers, then recomputes global trust. */
  async runRound (peers: PeerId[]): Promise<void> {
    const chosen = sample(peers, PEERS_PER_ROUND)
    for (const peer of chosen) {
      try {
        await this.exchange(peer)
      } catch (err) {
        this.init.logger.debug({ peer: peer.toString(), err }, 'trust exchange failed')
      }
    }
    const { iterations, peers: known } = this.init.reputation.recompute()
    this.init.logger.debug({ exchanged: chosen.length, iterations, peers: known }, 'recomputed global trust')
  }

  /**
   * Sends this node's report to the peer and returns the peer's report,
   * verified and stored by the reputation. Throws a TrustExchangeError when
   * the peer's response is invalid or late.
   */
  async exchange (peer: PeerId, options: { signal?: AbortSignal } = {}): Promise<TrustReport> {
    const signal = this.deadline(options.signal)
    const stream = await this.init.libp2p.dialProtocol(peer, TRUST_PROTOCOL, { signal })
    const messages = lpStream(stream, { maxDataLength: MAX_TRUST_MESSAGE_BYTES })
    try {
      await messages.write(this.init.reputation.createReport(this.init.signer), { signal })
      const report = this.decode((await messages.read({ signal })).subarray(), peer.toString())
      await stream.close({ signal })
      this.init.reputation.acceptVerifiedReport(report)
      return report
    } catch (err) {
      stream.abort(err as Error)
      throw err instanceof TrustExchangeError ? err : new TrustExchangeError(`trust exchange with ${peer.toString()} failed: ${(err as Error).message}`, { cause: err })
    }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = this.deadline()
    try {
      const now = (this.init.clock ?? Date.now)()
      const last = this.lastInbound.get(peer)
      if (last !== undefined && now - last < (this.init.minIntervalMs ?? MIN_EXCHANGE_INTERVAL_MS)) {
        throw new TrustExchangeError(`peer ${peer} asked for a trust exchange again after ${now - last} ms`)
      }

      const messages = lpStream(stream, { maxDataLength: MAX_TRUST_MESSAGE_BYTES })
      const report = this.decode((await messages.read({ signal })).subarray(), peer)
      this.init.reputation.acceptVerifiedReport(report)
      // Only a good exchange starts the interval: a bad one costs the peer a
      // stream slot (at most two per connection) and the read deadline.
      this.lastInbound.set(peer, now)
      await messages.write(this.init.reputation.createReport(this.init.signer), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.badMessages++
      this.init.logger.warn({ peer, err, badMessages: this.badMessages }, 'reset a trust exchange stream')
      stream.abort(err as Error)
    }
  }

  private decode (bytes: Uint8Array, peer: string): TrustReport {
    let report: TrustReport
    try {
      report = decodeTrustReport(bytes)
    } catch (err) {
      throw new TrustExchangeError(`invalid trust report from ${peer}: ${(err as Error).message}`, { cause: err })
    }
    if (report.reporter !== peer) {
      throw new TrustExchangeError(`peer ${peer} sent a trust report signed by ${report.reporter}`)
    }
    return report
  }

  private deadline (signal?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(this.init.timeoutMs ?? TRUST_EXCHANGE_TIMEOUT_MS)
    return signal === undefined ? timeout : AbortSignal.any([signal, timeout])
  }
}

/** Up to `count` items chosen at random, by a partial Fisher-Yates shuffle of a copy. */
function sample<T> (items: readonly T[], count: number): T[] {
  const copy = [...items]
  const size = Math.min(count, copy.length)
  for (let index = 0; index < size; index++) {
    const other = index + Math.floor(Math.random() * (copy.length - index))
    const swap = copy[index]!
    copy[index] = copy[other]!
    copy[other] = swap
  }
  return copy.slice(0, size)
}
