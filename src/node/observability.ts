import { registerDashboardRoutes } from '../api/dashboard-routes.js'
import { registerMetricsRoutes } from '../api/metrics-routes.js'
import { DashboardFeed } from '../dashboard/feed.js'
import { SnapshotBuilder } from '../dashboard/snapshot.js'
import type { ApiApp } from '../api/server.js'
import type { CascadeEvents } from '../cascade/events.js'
import type { CascadeService } from '../cascade/pipeline.js'
import type { Ledger } from '../credits/ledger.js'
import type { Discovery } from '../dht/discovery.js'
import type { NodeMetrics } from '../metrics/node-metrics.js'
import type { Reputation } from '../reputation/reputation.js'
import type { JobRegistry } from '../stage/job-registry.js'
import type { Logger } from './logger.js'
import type { EmdxNode } from './node.js'

export interface ObservabilityInit {
  /** The started node; throws while the node is still starting. */
  node: () => EmdxNode
  discovery: Discovery
  ledger: Ledger
  reputation: Reputation
  jobs: JobRegistry
  cascades: CascadeService
  events: CascadeEvents
  metrics: NodeMetrics
  logger: Logger
}

/**
 * Registers what shows the node to people and to monitoring: the dashboard
 * page with its snapshot stream, and `/metrics`. Both read the node's parts
 * when asked, so they cost nothing while no client is connected.
 */
export function registerObservability (app: ApiApp, init: ObservabilityInit): void {
  const builder = new SnapshotBuilder({
    status: () => init.node().status(),
    seenRecords: () => init.discovery.seenRecords(),
    ledger: init.ledger,
    reputation: init.reputation,
    jobs: init.jobs,
    cascades: init.cascades
  }, Date.now())
  const feed = new DashboardFeed({
    builder,
    events: init.events,
    logger: init.logger,
    refreshNetwork: async (signal) => { await init.node().refreshNetworkView(signal) }
  })
  registerDashboardRoutes(app, { feed, snapshot: async () => await builder.build() })

  init.metrics.observe({
    status: () => init.node().status(),
    seenRecords: () => init.discovery.seenRecords(),
    balance: () => init.ledger.balance(),
    executorStats: () => init.node().executor?.stats,
    discoveryStats: () => init.discovery.stats,
    dashboardClients: () => feed.clientCount
  }, init.jobs, init.events)
  registerMetricsRoutes(app, init.metrics)
  app.addHook('onClose', async () => { init.metrics.stop() })
}
