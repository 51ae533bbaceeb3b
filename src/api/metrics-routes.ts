import type { NodeMetrics } from '../metrics/node-metrics.js'
import type { ApiApp } from './server.js'

/** `GET /metrics`: the node's metrics in the Prometheus text format. */
export function registerMetricsRoutes (app: ApiApp, metrics: NodeMetrics): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.render()
    return await reply.type(metrics.contentType).send(body)
  })
}
