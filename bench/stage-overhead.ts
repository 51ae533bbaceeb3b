/**
 * Measures the overhead of the network. The same trivial command stage
 * (`true`) runs through this node's own sandbox, and from a requester node
 * in another process (bench/support/remote-requester.ts) through the stage
 * protocol on loopback. The protocol adds the offer, the credit check,
 * sealing, the result and the receipt exchange. The executor uses the Docker
 * backend with its warm pool for both, and runs alternate so that load falls
 * on both alike. The nodes run in two processes because in one, the
 * executor's cleanup and warm-pool refill after each stage would delay the
 * requester's own work, which two machines would do side by side.
 *
 *   npm run build && DOCKER_HOST=... npx tsx bench/stage-overhead.ts [--runs 30]
 */
import '../src/node/polyfills.js'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/node/config.js'
import { silentLogger } from '../src/node/logger.js'
import { EmdxNode } from '../src/node/node.js'
import { newJobId } from '../src/stage/requester.js'
import { formatSummary, summarize } from './support/stats.js'
import type { StageRunner } from '../src/stage/runner.js'

const runsIndex = process.argv.indexOf('--runs')
const runs = runsIndex >= 0 ? Number(process.argv[runsIndex + 1]) : 30
const image = `emdx-sandbox-test:latest=${path.resolve('build/test-image/rootfs')}`

async function startNode (baseDir: string, name: string, settings: Record<string, unknown>): Promise<EmdxNode> {
  const config = await loadConfig(path.join(baseDir, name), { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false, ...settings })
  return await EmdxNode.start({ config, logger: silentLogger() })
}

async function runLocal (runner: StageRunner): Promise<number> {
  const started = performance.now()
  const run = await runner.start({ jobId: newJobId(), command: ['true'], limits: { timeoutMs: 30_000, cpus: 1, memoryBytes: 256 * 1024 ** 2 } })
  for await (const _event of run.progress) {
    // Read to the end, as the stage protocol does.
  }
  const result = await run.result
  if (result.outcome !== 'succeeded') {
    throw new Error(`local run ${result.outcome}: ${result.message}`)
  }
  return performance.now() - started
}

/** Starts the requester process, which prints one line of JSON for each `run` on its input. */
function startRequester (dataDir: string, executorAddress: string): { ready: Promise<void>, run: () => Promise<number>, stop: () => void } {
  const script = fileURLToPath(new URL('./support/remote-requester.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', script, dataDir, executorAddress], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async (): Promise<Record<string, unknown>> => {
    const line = await lines.next()
    if (line.done === true) {
      throw new Error('the requester process ended')
    }
    return JSON.parse(line.value) as Record<string, unknown>
  }
  return {
    ready: next().then(() => {}),
    run: async () => {
      child.stdin.write('run\n')
      const answer = await next()
      if (typeof answer.ms !== 'number') {
        throw new Error(String(answer.error))
      }
      return answer.ms
    },
    stop: () => { child.stdin.end() }
  }
}

const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-overhead-'))
const executor = await startNode(baseDir, 'executor', { runtime: 'runc', image: [image], shareCpu: '2', shareMem: '2g' })
const requester = startRequester(path.join(baseDir, 'requester'), executor.addresses()[0] as string)
try {
  if (executor.runner === undefined || executor.advertiser === undefined) {
    throw new Error(`the executor has no sandbox: ${executor.sandbox.info.reason ?? 'unknown reason'}`)
  }
  await requester.ready
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node.js ${process.version}, sandbox ${executor.sandbox.info.backend}/${executor.sandbox.info.runtime}, ${runs} runs each`)

  // Warm-up: the first runs fill caches and open the connection's streams.
  await runLocal(executor.runner)
  await requester.run()

  const local: number[] = []
  const remote: number[] = []
  for (let run = 0; run < runs; run++) {
    local.push(await runLocal(executor.runner))
    await sleep(600)
    remote.push(await requester.run())
    await sleep(600)
  }

  const localSummary = summarize(local)
  const remoteSummary = summarize(remote)
  console.log(`local sandbox:          ${formatSummary(localSummary, 'ms')}`)
  console.log(`through stage protocol: ${formatSummary(remoteSummary, 'ms')}`)
  console.log(`added at the median: ${(remoteSummary.median - localSummary.median).toFixed(1)} ms, at p95: ${(remoteSummary.p95 - localSummary.p95).toFixed(1)} ms; ratio of medians ${(remoteSummary.median / localSummary.median).toFixed(2)}x`)
} finally {
  requester.stop()
  await sleep(500)
  await executor.stop()
  await rm(baseDir, { recursive: true, force: true })
}
process.exit(0)
