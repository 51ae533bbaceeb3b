import { Counter, Gauge } from 'prom-client'
import type { LedgerBalance } from '../credits/ledger.js'
import type { Discovery, SeenRecord } from '../dht/discovery.js'
import type { NodeStatus } from '../node/node.js'
import type { ExecutorStats } from '../stage/executor-service.js'
import type { Registry } from 'prom-client'

/** The parts of a started node that the metrics read at each scrape. */
export interface MetricsSource {
  status: () => NodeStatus
  seenRecords: () => SeenRecord[]
  balance: () => LedgerBalance
  /** Undefined when the node runs no stages for others. */
  executorStats: () => ExecutorStats | undefined
  discoveryStats: () => Discovery['stats']
  /** Clients of the dashboard's event stream. */
  dashboardClients: () => number
}

/**
 * Registers the metrics that are read from the node's state when
 * Prometheus scrapes: gauges of capacity, peers and balance, and counters
 * that mirror the executor's, the ledger's and discovery's own counts.
 */
export function registerStateMetrics (registry: Registry, source: MetricsSource): void {
  registerNodeGauges(registry, source)
  registerNetworkGauges(registry, source)
  registerCreditMetrics(registry, source)
  registerExecutorCounters(registry, source)
  registerDiscoveryCounters(registry, source)
}

function registerNodeGauges (registry: Registry, source: MetricsSource): void {
  const info = new Gauge({
    name: 'emdx_node_info',
    help: 'Always 1; the labels name this node, its version and its sandbox',
    labelNames: ['peer_id', 'version', 'backend', 'runtime', 'isolation'],
    registers: [registry],
    collect: () => {
      const status = source.status()
      info.reset()
      info.set({ peer_id: status.peerId, version: status.version, backend: status.sandbox.backend, runtime: status.sandbox.runtime, isolation: status.sandbox.isolation }, 1)
    }
  })
  const cpus = new Gauge({
    name: 'emdx_capacity_cpus',
    help: 'CPUs this node shares with the network (0 when it shares nothing), and those not leased to running stages',
    labelNames: ['state'],
    registers: [registry],
    collect: () => {
      const { share } = source.status()
      cpus.set({ state: 'shared' }, share.enabled ? share.cpus : 0)
      cpus.set({ state: 'free' }, share.freeCpus)
    }
  })
  const memory = new Gauge({
    name: 'emdx_capacity_memory_bytes',
    help: 'Memory this node shares with the network (0 when it shares nothing), and the part not leased to running stages',
    labelNames: ['state'],
    registers: [registry],
    collect: () => {
      const { share } = source.status()
      memory.set({ state: 'shared' }, share.enabled ? share.memoryBytes : 0)
      memory.set({ state: 'free' }, share.freeMemoryBytes)
    }
  })
  const running = new Gauge({
    name: 'emdx_running_stages',
    help: 'Stages this node runs for others now',
    registers: [registry],
    collect: () => { running.set(source.status().share.runningStages) }
  })
  const dashboards = new Gauge({
    name: 'emdx_dashboard_clients',
    help: 'Open event streams of the dashboard',
    registers: [registry],
    collect: () => { dashboards.set(source.dashboardClients()) }
  })
}

function registerNetworkGauges (registry: Registry, source: MetricsSource): void {
  const peers = new Gauge({
    name: 'emdx_connected_peers',
    help: 'Peers with an open connection to this node',
    registers: [registry],
    collect: () => { peers.set(source.status().connectedPeers) }
  })
  const routingTable = new Gauge({
    name: 'emdx_dht_routing_table_size',
    help: 'Peers in this node\'s DHT routing table',
    registers: [registry],
    collect: () => { routingTable.set(source.status().routingTableSize) }
  })
  const providers = new Gauge({
    name: 'emdx_network_providers',
    help: 'Providers whose unexpired capacity record this node fetched lately',
    registers: [registry],
    collect: () => { providers.set(source.seenRecords().length) }
  })
  const cpus = new Gauge({
    name: 'emdx_network_cpus',
    help: 'CPUs of the providers this node has seen lately, in total and free',
    labelNames: ['state'],
    registers: [registry],
    collect: () => {
      const records = source.seenRecords().map(seen => seen.record)
      cpus.set({ state: 'total' }, sum(records.map(record => record.cpus.total)))
      cpus.set({ state: 'free' }, sum(records.map(record => record.cpus.free)))
    }
  })
  const memory = new Gauge({
    name: 'emdx_network_memory_bytes',
    help: 'Memory of the providers this node has seen lately, in total and free',
    labelNames: ['state'],
    registers: [registry],
    collect: () => {
      const records = source.seenRecords().map(seen => seen.record)
      memory.set({ state: 'total' }, sum(records.map(record => record.memory.totalBytes)))
      memory.set({ state: 'free' }, sum(records.map(record => record.memory.freeBytes)))
    }
  })
}

function registerCreditMetrics (registry: Registry, source: MetricsSource): void {
  const balance = new Gauge({
    name: 'emdx_balance_millicredits',
    help: 'This node\'s balance: the starting grant plus credits earned less credits spent (1 credit = 1000 millicredits)',
    registers: [registry],
    collect: () => { balance.set(source.balance().balance) }
  })
  mirrorCounter(registry, 'emdx_credits_earned_millicredits_total', 'Credits earned running stages for others', () => source.balance().earned)
  mirrorCounter(registry, 'emdx_credits_spent_millicredits_total', 'Credits spent on stages run by others', () => source.balance().spent)
}

function registerExecutorCounters (registry: Registry, source: MetricsSource): void {
  mirrorCounter(registry, 'emdx_stage_offers_total', 'Stage offers this node received', () => source.executorStats()?.offers ?? 0)
  mirrorCounter(registry, 'emdx_ledger_segments_requested_total', 'Ledger segments this node asked requesters for while checking their credit', () => source.executorStats()?.ledgerRequests ?? 0)
  mirrorCounter(registry, 'emdx_stages_cancelled_by_requester_total', 'Stages cancelled because their requester went away', () => source.executorStats()?.cancelledByRequester ?? 0)

  const rejected = new Counter({
    name: 'emdx_stage_messages_rejected_total',
    help: 'Stage protocol messages this node rejected: offers it declined (kind offer, by reject reason) and streams it reset over a protocol violation (kind violation)',
    labelNames: ['kind', 'reason'],
    registers: [registry],
    collect: () => {
      const stats = source.executorStats()
      rejected.reset()
      for (const [reason, count] of Object.entries(stats?.rejected ?? {})) {
        rejected.inc({ kind: 'offer', reason }, count ?? 0)
      }
      for (const [reason, count] of Object.entries(stats?.violations ?? {})) {
        rejected.inc({ kind: 'violation', reason }, count ?? 0)
      }
    }
  })
}

function registerDiscoveryCounters (registry: Registry, source: MetricsSource): void {
  mirrorCounter(registry, 'emdx_discovery_capacity_queries_total', 'Capacity records this node asked providers for', () => source.discoveryStats().queries)
  mirrorCounter(registry, 'emdx_discovery_failed_dials_total', 'Providers this node failed to reach when asking for their capacity', () => source.discoveryStats().failedDials)

  const skipped = new Counter({
    name: 'emdx_discovery_skipped_providers_total',
    help: 'Providers skipped without a dial: unreachable (backed off after a failed dial) or excluded (distrusted)',
    labelNames: ['reason'],
    registers: [registry],
    collect: () => {
      const stats = source.discoveryStats()
      skipped.reset()
      skipped.inc({ reason: 'unreachable' }, stats.skippedUnreachable)
      skipped.inc({ reason: 'excluded' }, stats.skippedExcluded)
    }
  })
}

/**
 * A counter that shows a count kept elsewhere. prom-client counters only
 * go up by increments, so each scrape resets it and adds the current count;
 * the count itself only grows, so Prometheus gets a proper counter.
 */
function mirrorCounter (registry: Registry, name: string, help: string, read: () => number): void {
  const counter = new Counter({
    name,
    help,
    registers: [registry],
    collect: () => {
      counter.reset()
      counter.inc(read())
    }
  })
}

function sum (values: number[]): number {
  return values.reduce((total, value) => total + value, 0)
}
