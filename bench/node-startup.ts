/**
 * Idle memory of one node and the time a 5-node devnet takes to fill its
 * routing tables, each against a baseline measured in the same run.
 *
 *   npm run build && npx tsx bench/node-startup.ts [--runs 5]
 *
 * Memory: resident set size of `emdx-node start` after 20 s idle, against a
 * bare Node.js process that only keeps a timer. Routing tables: time from
 * launching `emdx-node devnet --nodes 5` until every node's routing table is
 * non-empty, against the time until every node's API responded.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { formatSummary, summarize } from './support/stats.js'
import type { ChildProcess } from 'node:child_process'

const bin = fileURLToPath(new URL('../bin/emdx-node.js', import.meta.url))
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] ?? 5) || 5
const IDLE_MS = 20_000

async function residentKib (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  if (match == null) {
    throw new Error(`no VmRSS for pid ${pid}`)
  }
  return Number(match[1])
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) {
    return
  }
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function waitForApi (port: number, deadline: number): Promise<{ routingTableSize: number } | undefined> {
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/api/v1/status`, { signal: AbortSignal.timeout(1000) })
      if (response.ok) {
        return await response.json() as { routingTableSize: number }
      }
    } catch {
      // Not up yet.
    }
    await sleep(50)
  }
  return undefined
}

async function idleMemory (apiPort: number): Promise<{ node: number, baseline: number }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-'))
  const node = spawn(process.execPath, [bin, 'start', '--data-dir', dataDir, '--api-port', String(apiPort), '--port', '0', '--listen-host', '127.0.0.1', '--no-mdns', '--log-format', 'json'], { stdio: 'ignore' })
  const baseline = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  try {
    if (await waitForApi(apiPort, Date.now() + 30_000) === undefined) {
      throw new Error('node did not start')
    }
    await sleep(IDLE_MS)
    return { node: await residentKib(node.pid as number), baseline: await residentKib(baseline.pid as number) }
  } finally {
    await stop(node)
    await stop(baseline)
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function devnetFormation (apiPort: number, size: number): Promise<{ apisUp: number, tablesFilled: number }> {
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-devnet-'))
  const started = performance.now()
  const devnet = spawn(process.execPath, [bin, 'devnet', '--nodes', String(size), '--base-dir', baseDir, '--api-port', String(apiPort), '--share-mem', '256m'], { stdio: 'ignore' })
  const ports = Array.from({ length: size }, (_, index) => apiPort + index)
  let apisUp = Number.NaN
  let tablesFilled = Number.NaN
  try {
    const deadline = Date.now() + 120_000
    const upAt = new Map<number, number>()
    while (Date.now() < deadline) {
      const statuses = await Promise.all(ports.map(async port => await waitForApi(port, Date.now() + 1)))
      statuses.forEach((status, index) => {
        if (status !== undefined && !upAt.has(index)) {
          upAt.set(index, performance.now() - started)
        }
      })
      if (upAt.size === size && Number.isNaN(apisUp)) {
        apisUp = Math.max(...upAt.values())
      }
      if (statuses.every(status => status !== undefined && status.routingTableSize > 0)) {
        tablesFilled = performance.now() - started
        break
      }
      await sleep(25)
    }
    return { apisUp, tablesFilled }
  } finally {
    await stop(devnet)
    await rm(baseDir, { recursive: true, force: true })
  }
}

const apiBase = 31_000 + Math.floor(Math.random() * 1000) * 10
console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 1024 ** 3)} GiB, Node.js ${process.version}`)

const nodeRss: number[] = []
const baselineRss: number[] = []
for (let run = 0; run < runs; run++) {
  const { node, baseline } = await idleMemory(apiBase)
  nodeRss.push(node / 1024)
  baselineRss.push(baseline / 1024)
  console.log(`memory run ${run + 1}: node ${(node / 1024).toFixed(1)} MiB, bare Node.js ${(baseline / 1024).toFixed(1)} MiB`)
}

const apis: number[] = []
const tables: number[] = []
for (let run = 0; run < runs; run++) {
  const { apisUp, tablesFilled } = await devnetFormation(apiBase, 5)
  apis.push(apisUp)
  tables.push(tablesFilled)
  console.log(`devnet run ${run + 1}: all APIs up ${apisUp.toFixed(0)} ms, all routing tables non-empty ${tablesFilled.toFixed(0)} ms`)
}

const nodeSummary = summarize(nodeRss)
const baselineSummary = summarize(baselineRss)
console.log('\nidle resident memory, one node after 20 s:')
console.log(`  emdx-node start:  ${formatSummary(nodeSummary, 'MiB')}`)
console.log(`  bare Node.js:     ${formatSummary(baselineSummary, 'MiB')}`)
console.log(`  ratio of medians: ${(nodeSummary.median / baselineSummary.median).toFixed(2)}x`)
const apiSummary = summarize(apis)
const tableSummary = summarize(tables)
console.log('\n5-node devnet, from launch:')
console.log(`  every API responding:           ${formatSummary(apiSummary, 'ms', 0)}`)
console.log(`  every routing table non-empty:  ${formatSummary(tableSummary, 'ms', 0)}`)
console.log(`  difference of medians: ${(tableSummary.median - apiSummary.median).toFixed(0)} ms`)
