import type { NodeStatus, PeerSummary } from '../node/node.js'
import type { ApiApp } from './server.js'

export interface StatusSource {
  status: () => NodeStatus
  peers: () => Promise<PeerSummary[]>
}

/** `GET /api/v1/status` and `GET /api/v1/peers`. */
export function registerStatusRoutes (app: ApiApp, source: StatusSource): void {
  app.get('/api/v1/status', async () => source.status())
  app.get('/api/v1/peers', async () => ({ peers: await source.peers() }))
}
