import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'
import { registerStateMetrics } from './state-metrics.js'
import type { MetricsSource } from './state-metrics.js'
import type { CascadeEvents } from '../cascade/events.js'
import type { JobRegistry } from '../stage/job-registry.js'

export type { MetricsSource } from './state-metrics.js'

/** Upper bounds of the stage duration histogram, in seconds: agent stages take seconds to an hour. */
export const STAGE_DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600]

let processRegistry: Registry | undefined

/**
 * Returns the process metrics (CPU, memory, event loop, garbage
 * collection), made once per process. prom-client starts observers for
 * them that cannot be stopped, and they describe the process, not one node.
 */
function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/**
 * The Prometheus metrics of one node: libp2p's own (through
 * `@libp2p/prometheus-metrics`), the process metrics, and the node's: stages
 * by outcome and their durations, capacity, credits, rejected stage messages,
 * discovery and cascade events. Each node has its own registry, so several
 * nodes in one process (as in tests) report their own figures.
 */
export class NodeMetrics {
  readonly registry = new Registry()
  private readonly stages: Counter<'role' | 'outcome'>
  private readonly durations: Histogram<'role'>
  private readonly cascadeEvents: Counter<'type'>
  private readonly unsubscribes: Array<() => void> = []

  constructor () {
    this.stages = new Counter({
      name: 'emdx_stages_total',
      help: 'Stage jobs that ended, by side (executor: run here for others; requester: sent out) and outcome (the sandbox outcome, or rejected, cancelled or error when no result came)',
      labelNames: ['role', 'outcome'],
      registers: [this.registry]
    })
    this.durations = new Histogram({
      name: 'emdx_stage_duration_seconds',
      help: 'Time from the start of a stage job to its end, by side',
      labelNames: ['role'],
      buckets: STAGE_DURATION_BUCKETS,
      registers: [this.registry]
    })
    this.cascadeEvents = new Counter({
      name: 'emdx_cascade_events_total',
      help: 'Cascade events of this node, by type',
      labelNames: ['type'],
      registers: [this.registry]
    })
  }

  /**
   * The factory for libp2p's `metrics` option, registering libp2p's metrics
   * in this node's registry.
   *
   * NOTE: @libp2p/prometheus-metrics 5.0 keeps one map of metric names per
   * process and clears it for each new node. With several nodes in one
   * process, a metric that a node registers late may be counted in the
   * registry of a node started after it. One node per process, as
   * `emdx-node start` runs, is not affected.
   */
  libp2p (): ReturnType<typeof prometheusMetrics> {
    return prometheusMetrics({ registry: this.registry, collectDefaultMetrics: false })
  }

  /** Counts the jobs and cascade events of a started node and reads its state at each scrape. */
  observe (source: MetricsSource, jobs: JobRegistry, events: CascadeEvents): void {
    registerStateMetrics(this.registry, source)
    this.unsubscribes.push(jobs.onFinished((job) => {
      this.stages.inc({ role: job.role, outcome: job.outcome ?? 'error' })
      const seconds = ((job.finishedAt ?? job.startedAt) - job.startedAt) / 1000
      this.durations.observe({ role: job.role }, seconds)
    }))
    this.unsubscribes.push(events.subscribe(({ event }) => {
      this.cascadeEvents.inc({ type: event.type })
    }))
  }

  /** Stops counting jobs and events. */
  stop (): void {
    for (const unsubscribe of this.unsubscribes.splice(0)) {
      unsubscribe()
    }
  }

  get contentType (): string {
    return this.registry.contentType
  }

  /** Renders the node's and the process's metrics in the Prometheus text format. */
  async render (): Promise<string> {
    return await Registry.merge([processMetrics(), this.registry]).metrics()
  }
}
