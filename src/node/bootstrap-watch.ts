import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from './logger.js'
import type { Libp2p } from '@libp2p/interface'

export const BOOTSTRAP_RETRY_MS = 15_000
const DIAL_TIMEOUT_MS = 5_000

/**
 * Redials the bootstrap peers while the node has no connection at all.
 * libp2p's bootstrap discovery dials them once at start, so a bootstrap peer
 * that was down or busy then would leave the node alone for good.
 * Returns a function that stops the watch.
 */
export function watchBootstrap (libp2p: Libp2p, bootstrap: string[], logger: Logger, intervalMs = BOOTSTRAP_RETRY_MS): () => void {
  if (bootstrap.length === 0) {
    return () => {}
  }

  let dialling = false
  const timer = setInterval(() => {
    if (dialling || libp2p.getConnections().length > 0) {
      return
    }
    dialling = true
    logger.info({ peers: bootstrap.length }, 'no connected peers; dialling the bootstrap peers again')
    void Promise.all(bootstrap.map(async address => {
      try {
        await libp2p.dial(multiaddr(address), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      } catch (err) {
        logger.warn({ address, err }, 'failed to dial a bootstrap peer')
      }
    })).finally(() => { dialling = false })
  }, intervalMs)
  timer.unref()
  return () => { clearInterval(timer) }
}
