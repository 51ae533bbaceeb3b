/**
 * Discovery latency: the time from asking for providers of an agent stage to
 * having at least 3 usable ones, in networks of 10, 25 and 50 nodes on
 * loopback. The nodes run in worker processes of 10 nodes each; the
 * requester and the bootstrap node run here. Each run measures a cold search
 * (the requester forgot every record it had seen, so providers come from the
 * DHT alone) and a warm one (providers seen in the last minute are asked at
 * once, beside the DHT). Baseline in the same run: one plain DHT
 * findProviders of one shard of the class key, run to its end.
 *
 *   npx tsx bench/discovery.ts [--runs 30] [--sizes 10,25,50]
 */
import '../src/node/polyfills.js'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { classKey } from '../src/dht/classes.js'
import { loadConfig } from '../src/node/config.js'
import { silentLogger } from '../src/node/logger.js'
import { EmdxNode } from '../src/node/node.js'
import { formatSummary, summarize } from './support/stats.js'
import type { StageNeeds } from '../src/dht/ranking.js'
import type { ChildProcess } from 'node:child_process'

const argument = (name: string, fallback: string): string => {
  const index = process.argv.indexOf(name)
  return index >= 0 ? (process.argv[index + 1] ?? fallback) : fallback
}
const runs = Number(argument('--runs', '30'))
const sizes = argument('--sizes', '10,25,50').split(',').map(Number)
const NODES_PER_WORKER = 10
const WANTED = 3
const needs: StageNeeds = { cpus: 1, memoryBytes: 512 * 1024 ** 2, agent: 'claude' }
const worker = fileURLToPath(new URL('./support/swarm-worker.ts', import.meta.url))

async function startLocalNode (baseDir: string, name: string, bootstrap: string[]): Promise<EmdxNode> {
  const config = await loadConfig(path.join(baseDir, name), { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false, share: false, bootstrap })
  return await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true })
}

async function startWorker (count: number, sharing: number, bootstrap: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, String(count), String(sharing), bootstrap], { stdio: ['pipe', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('"ready"')) {
        resolve()
      }
    })
    child.once('exit', code => { reject(new Error(`worker exited with ${code}`)) })
  })
  return child
}

async function measure (size: number): Promise<void> {
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-discovery-'))
  const bootstrap = await startLocalNode(baseDir, 'bootstrap', [])
  const requester = await startLocalNode(baseDir, 'requester', bootstrap.addresses())
  const workers: ChildProcess[] = []
  try {
    // A third of the other nodes share, so that the requester always has
    // more providers to choose from than it needs.
    let remaining = size - 2
    let sharing = Math.max(WANTED + 1, Math.round(remaining / 3))
    while (remaining > 0) {
      const count = Math.min(NODES_PER_WORKER, remaining)
      const share = Math.min(count, sharing)
      workers.push(await startWorker(count, share, bootstrap.addresses()[0] as string))
      remaining -= count
      sharing -= share
    }

    // Let the providers publish and the routing tables settle.
    for (let attempt = 0; attempt < 120; attempt++) {
      const found = await requester.discovery.find(needs, { count: WANTED, signal: AbortSignal.timeout(10_000) })
      if (found.length >= WANTED && attempt >= 5) {
        break
      }
      await sleep(1000)
    }

    const key = await classKey({ kind: 'agent', agent: 'claude' }, 0)
    const cold: number[] = []
    const warm: number[] = []
    const floor: number[] = []
    let short = 0
    for (let run = 0; run < runs; run++) {
      let started = performance.now()
      for await (const _event of requester.libp2p.services.dht.findProviders(key, { signal: AbortSignal.timeout(10_000) })) {
        // The plain query, run to its end.
      }
      floor.push(performance.now() - started)

      requester.discovery.forgetSeenRecords()
      started = performance.now()
      const coldFound = await requester.discovery.find(needs, { count: WANTED, signal: AbortSignal.timeout(10_000) })
      cold.push(performance.now() - started)

      started = performance.now()
      const warmFound = await requester.discovery.find(needs, { count: WANTED, signal: AbortSignal.timeout(10_000) })
      warm.push(performance.now() - started)
      short += (coldFound.length < WANTED ? 1 : 0) + (warmFound.length < WANTED ? 1 : 0)
      await sleep(100)
    }

    const coldSummary = summarize(cold)
    const warmSummary = summarize(warm)
    const baseline = summarize(floor)
    console.log(`\n${size} nodes (requester + bootstrap here, ${workers.length} worker processes)${short > 0 ? `; ${short} searches found fewer than ${WANTED}` : ''}:`)
    console.log(`  cold discovery of ${WANTED} usable providers: ${formatSummary(coldSummary, 'ms', 0)}`)
    console.log(`  warm discovery of ${WANTED} usable providers: ${formatSummary(warmSummary, 'ms', 0)}`)
    console.log(`  one-shard findProviders (baseline):  ${formatSummary(baseline, 'ms', 0)}`)
    console.log(`  cold / baseline medians: ${(coldSummary.median / baseline.median).toFixed(2)}x, warm / baseline: ${(warmSummary.median / baseline.median).toFixed(2)}x`)
  } finally {
    workers.forEach(child => { child.stdin?.end() })
    await Promise.all(workers.map(async child => await new Promise(resolve => child.once('exit', resolve))))
    await requester.stop()
    await bootstrap.stop()
    await rm(baseDir, { recursive: true, force: true })
  }
}

console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node.js ${process.version}, ${runs} runs per size`)
for (const size of sizes) {
  await measure(size)
}
process.exit(0)
