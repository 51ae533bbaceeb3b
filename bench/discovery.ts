/**
 * Discovery latency: the time from asking for providers of an agent stage to
 * having at least 3 usable ones, in networks of 10, 25 and 50 nodes on
 * loopback. The other nodes run in worker processes of 10 nodes each, the
 * bootstrap node in a worker of its own, and the requester alone in this
 * process, as it would run on its own machine. Before measuring, the script
 * lets the network settle for `--settle` seconds. For about a minute and a
 * half after a start, kad-dht refreshes every routing table with random
 * walks. On a machine hosting all the nodes, that refresh takes the CPUs, and
 * the benchmark would measure it rather than discovery. Each run measures a cold search
 * (the requester forgot every record it had seen, so providers come from the
 * DHT alone) and a warm one (providers seen in the last minute are asked at
 * once, beside the DHT). Baseline in the same run: one plain DHT
 * findProviders of one shard of the class key, run to its end.
 *
 *   npx tsx bench/discovery.ts [--runs 30] [--sizes 10,25,50] [--settle 120]
 */
import '../src/node/polyfills.js'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
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
const settleSeconds = Number(argument('--settle', '120'))
const NODES_PER_WORKER = 10
const WANTED = 3
const needs: StageNeeds = { cpus: 1, memoryBytes: 512 * 1024 ** 2, agent: 'claude' }
const worker = fileURLToPath(new URL('./support/swarm-worker.ts', import.meta.url))

async function startLocalNode (baseDir: string, name: string, bootstrap: string[]): Promise<EmdxNode> {
  const config = await loadConfig(path.join(baseDir, name), { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false, share: false, bootstrap })
  return await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true })
}

interface Worker {
  child: ChildProcess
  /** Listen addresses of each node in the worker. */
  addresses: string[][]
}

async function startWorker (count: number, sharing: number, bootstrap: string): Promise<Worker> {
  const child = spawn(process.execPath, ['--import', 'tsx', worker, String(count), String(sharing), bootstrap], { stdio: ['pipe', 'pipe', 'inherit'] })
  return await new Promise<Worker>((resolve, reject) => {
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const line = output.split('\n').find(candidate => candidate.includes('"ready"'))
      if (line !== undefined) {
        resolve({ child, addresses: (JSON.parse(line) as { addresses: string[][] }).addresses })
      }
    })
    child.once('exit', code => { reject(new Error(`worker exited with ${code}`)) })
  })
}

/** CPU time a process has used so far, in clock ticks (Linux); 0 where /proc is missing. */
function cpuTicks (pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid ?? 0}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/** Share of one CPU the workers used over the last `ms`, in percent. */
async function workerLoad (workers: Worker[], ms: number): Promise<number> {
  const before = workers.map(({ child }) => cpuTicks(child.pid))
  await sleep(ms)
  const used = workers.reduce((sum, { child }, index) => sum + cpuTicks(child.pid) - (before[index] ?? 0), 0)
  // Linux counts 100 ticks a second.
  return used / (ms / 1000)
}

async function measure (size: number): Promise<void> {
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-discovery-'))
  const workers: Worker[] = []
  let requester: EmdxNode | undefined
  try {
    const bootstrapWorker = await startWorker(1, 0, '-')
    workers.push(bootstrapWorker)
    const bootstrap = bootstrapWorker.addresses[0]?.[0] as string
    requester = await startLocalNode(baseDir, 'requester', [bootstrap])

    // A third of the other nodes share, so that the requester always has
    // more providers to choose from than it needs.
    let remaining = size - 2
    let sharing = Math.max(WANTED + 1, Math.round(remaining / 3))
    while (remaining > 0) {
      const count = Math.min(NODES_PER_WORKER, remaining)
      const share = Math.min(count, sharing)
      workers.push(await startWorker(count, share, bootstrap))
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
    const formingLoad = await workerLoad(workers, 5000)
    await sleep(Math.max(0, settleSeconds * 1000 - 5000))
    const settledLoad = await workerLoad(workers, 5000)

    const key = await classKey({ kind: 'agent', agent: 'claude' }, 0)
    const cold: number[] = []
    const warm: number[] = []
    const floor: number[] = []
    let short = 0
    const ticksBefore = workers.map(({ child }) => cpuTicks(child.pid))
    const measureStarted = performance.now()
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
    const ticksUsed = workers.reduce((sum, { child }, index) => sum + cpuTicks(child.pid) - (ticksBefore[index] ?? 0), 0)
    const measuringLoad = ticksUsed / ((performance.now() - measureStarted) / 1000)

    const coldSummary = summarize(cold)
    const warmSummary = summarize(warm)
    const baseline = summarize(floor)
    console.log(`\n${size} nodes (the requester here, ${workers.length} worker processes)${short > 0 ? `; ${short} searches found fewer than ${WANTED}` : ''}:`)
    console.log(`  CPU of all workers: ${formingLoad.toFixed(0)}% of one core while forming, ${settledLoad.toFixed(0)}% after ${settleSeconds} s, ${measuringLoad.toFixed(0)}% while measuring`)
    console.log(`  cold discovery of ${WANTED} usable providers: ${formatSummary(coldSummary, 'ms', 0)}`)
    console.log(`  warm discovery of ${WANTED} usable providers: ${formatSummary(warmSummary, 'ms', 0)}`)
    console.log(`  one-shard findProviders (baseline):  ${formatSummary(baseline, 'ms', 0)}`)
    console.log(`  cold / baseline medians: ${(coldSummary.median / baseline.median).toFixed(2)}x, warm / baseline: ${(warmSummary.median / baseline.median).toFixed(2)}x`)
  } finally {
    workers.forEach(({ child }) => { child.stdin?.end() })
    await Promise.all(workers.map(async ({ child }) => await new Promise(resolve => child.once('exit', resolve))))
    await requester?.stop()
    await rm(baseDir, { recursive: true, force: true })
  }
}

console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node.js ${process.version}, ${runs} runs per size`)
for (const size of sizes) {
  await measure(size)
}
process.exit(0)
