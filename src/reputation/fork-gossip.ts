/**
 * `/emdx/fork-proof/1.0.0`: a node that finds or receives a fork proof
 * distrusts the forker, stores the proof and sends it to its connected
 * peers, which verify it with the forker's peer id alone and do the same.
 * Each node forwards a forker's first proof only, so a proof floods the
 * network once. The dialer writes one length-prefixed message (the encoded
 * proof) and closes. A bad, oversized or late message, or a peer that sends
 * too many, resets the stream and is counted.
 */
import { lpStream } from '@libp2p/utils'
import { decodeForkProof, encodeForkProof, MAX_FORK_PROOF_BYTES } from '../credits/fork-proof.js'
import type { ForkProof } from '../credits/fork-proof.js'
import type { Logger } from '../node/logger.js'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

export const FORK_PROOF_PROTOCOL = '/emdx/fork-proof/1.0.0'
/** Deadline of the read or write of one proof. */
export const FORK_PROOF_TIMEOUT_MS = 10_000
/** Proofs one peer may send in a minute; more reset the stream. */
export const MAX_PROOFS_PER_MINUTE = 20

export interface ForkProofGossipInit {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>
  ledger: {
    recordForkProof: (proof: ForkProof) => Promise<boolean>
    forkProofs: () => Promise<ForkProof[]>
  }
  reputation: { markForker: (peer: string) => void }
  logger: Logger
  /** The connected peers that speak the protocol. */
  peers: () => Promise<PeerId[]>
  clock?: () => number
}

export class ForkProofGossip {
  /** Streams reset because of a bad, oversized, late or unwanted message. */
  badMessages = 0
  private readonly init: ForkProofGossipInit
  private readonly known = new Set<string>()
  private readonly received = new Map<string, { windowStart: number, count: number }>()
  private readonly sends = new Set<Promise<void>>()

  constructor (init: ForkProofGossipInit) {
    this.init = init
  }

  /** Serves the protocol; forkers with a stored proof are known and not sent again. */
  async start (): Promise<void> {
    for (const proof of await this.init.ledger.forkProofs()) {
      this.known.add(proof.owner)
    }
    await this.init.libp2p.handle(FORK_PROOF_PROTOCOL, async (stream, connection) => {
      await this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 2, runOnLimitedConnection: false })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(FORK_PROOF_PROTOCOL)
    await Promise.allSettled([...this.sends])
  }

  /**
   * Distrusts the proof's owner, stores the proof and sends it to the
   * connected peers but `from` and the owner. Returns false, doing nothing,
   * when a proof of that owner was handled before. The proof must be
   * verified already (`createForkProof` or `decodeForkProof`).
   */
  async learn (proof: ForkProof, from?: string): Promise<boolean> {
    if (this.known.has(proof.owner)) {
      return false
    }
    this.known.add(proof.owner)
    this.init.reputation.markForker(proof.owner)
    await this.init.ledger.recordForkProof(proof)

    const peers = (await this.init.peers()).filter(peer => peer.toString() !== from && peer.toString() !== proof.owner)
    this.init.logger.warn({ forker: proof.owner, seq: proof.seq, from, peers: peers.length }, 'distrusting a peer that forked its ledger chain; sending the proof to peers')
    const bytes = encodeForkProof(proof)
    for (const peer of peers) {
      const send = this.send(peer, bytes).catch((err: unknown) => {
        this.init.logger.debug({ peer: peer.toString(), forker: proof.owner, err }, 'failed to send a fork proof')
      }).finally(() => { this.sends.delete(send) })
      this.sends.add(send)
    }
    return true
  }

  private async send (peer: PeerId, bytes: Uint8Array): Promise<void> {
    const signal = AbortSignal.timeout(FORK_PROOF_TIMEOUT_MS)
    const stream = await this.init.libp2p.dialProtocol(peer, FORK_PROOF_PROTOCOL, { signal })
    try {
      await lpStream(stream, { maxDataLength: MAX_FORK_PROOF_BYTES }).write(bytes, { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    try {
      this.countFrom(peer)
      const signal = AbortSignal.timeout(FORK_PROOF_TIMEOUT_MS)
      const bytes = (await lpStream(stream, { maxDataLength: MAX_FORK_PROOF_BYTES }).read({ signal })).subarray()
      const proof = decodeForkProof(bytes)
      await stream.close({ signal })
      await this.learn(proof, peer)
    } catch (err) {
      this.badMessages++
      this.init.logger.warn({ peer, err, badMessages: this.badMessages }, 'reset a fork proof stream')
      stream.abort(err as Error)
    }
  }

  /** Counts a proof from the peer; throws when it sent more than MAX_PROOFS_PER_MINUTE within a minute. */
  private countFrom (peer: string): void {
    const now = (this.init.clock ?? Date.now)()
    const entry = this.received.get(peer)
    if (entry === undefined || now - entry.windowStart >= 60_000) {
      this.received.set(peer, { windowStart: now, count: 1 })
      return
    }
    entry.count++
    if (entry.count > MAX_PROOFS_PER_MINUTE) {
      throw new Error(`peer ${peer} sent more than ${MAX_PROOFS_PER_MINUTE} fork proofs within a minute`)
    }
  }
}
