/**
 * A 4-stage cascade (idea to done) on a 3-node network against the same four
 * stages run one after another in the requester's own sandbox. The agent is
 * the real Claude Code CLI answering from the scripted stand-in on loopback,
 * so the figures measure the network, the sandbox and the agent's start,
 * not a model. Every node has a Docker sandbox; runs alternate.
 *
 *   npm run build && DOCKER_HOST=... npx tsx bench/cascade.ts [--runs 5]
 */
import '../src/node/polyfills.js'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../src/node/config.js'
import { silentLogger } from '../src/node/logger.js'
import { EmdxNode } from '../src/node/node.js'
import { startMessagesApiStandIn } from '../src/standin/messages-api.js'
import { formatSummary, summarize } from './support/stats.js'

const runsIndex = process.argv.indexOf('--runs')
const runs = runsIndex >= 0 ? Number(process.argv[runsIndex + 1]) : 5
const KEY_ENV = 'EMDX_BENCH_AGENT_KEY'
const image = `emdx-sandbox-test:latest=${path.resolve('build/test-image/rootfs')}`

const apiKey = `sk-emdx-bench-${randomBytes(12).toString('hex')}`
process.env[KEY_ENV] = apiKey
const standIn = await startMessagesApiStandIn({ logger: silentLogger(), expectedApiKey: apiKey })
const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-cascade-'))
const agentSettings = { runtime: 'runc', image: [image], shareMem: '1g', agentBaseUrl: standIn.url, agentEgress: [`127.0.0.1:${standIn.port}`], agentModel: 'claude-stand-in', agentApiKeyEnv: KEY_ENV }

async function startNode (name: string, bootstrap: string[]): Promise<EmdxNode> {
  const config = await loadConfig(path.join(baseDir, name), { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false, bootstrap, ...agentSettings })
  return await EmdxNode.start({ config, logger: silentLogger(), advertiserTiming: { debounceMs: 100, retryMs: 200 } })
}

async function timeCascade (node: EmdxNode, remote: boolean): Promise<number> {
  const started = performance.now()
  const record = await node.requesting.cascades.submit({ content: 'Add a dark mode toggle to the settings page', auto: true, remote })
  await node.requesting.cascades.settled(record.id)
  const done = await node.requesting.cascades.get(record.id)
  if (done?.status !== 'completed') {
    throw new Error(`${remote ? 'remote' : 'local'} cascade ${record.id} ${done?.status ?? 'vanished'}: ${done?.error ?? ''}`)
  }
  return performance.now() - started
}

const requester = await startNode('requester', [])
const providers = [await startNode('provider-1', requester.addresses()), await startNode('provider-2', requester.addresses())]
try {
  for (const node of [requester, ...providers]) {
    if (node.runner === undefined) {
      throw new Error(`a node has no sandbox: ${node.sandbox.info.reason ?? 'unknown reason'}`)
    }
  }
  while ((await requester.discovery.find({ cpus: 1, memoryBytes: 512 * 1024 ** 2, agent: 'claude' }, { count: 2, signal: AbortSignal.timeout(5000) })).length < 2) {
    await sleep(500)
  }
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node.js ${process.version}, sandbox ${requester.sandbox.info.backend}/${requester.sandbox.info.runtime}, ${runs} runs each`)

  // Warm-up: one of each, so that image layers and the agent binary are in the page cache.
  await timeCascade(requester, true)
  await timeCascade(requester, false)

  const remote: number[] = []
  const local: number[] = []
  for (let run = 0; run < runs; run++) {
    remote.push(await timeCascade(requester, true))
    await sleep(1000)
    local.push(await timeCascade(requester, false))
    await sleep(1000)
  }

  const remoteSummary = summarize(remote)
  const localSummary = summarize(local)
  console.log(`4 stages on the network (2 providers): ${formatSummary(remoteSummary, 'ms', 0)}`)
  console.log(`4 stages in the local sandbox:         ${formatSummary(localSummary, 'ms', 0)}`)
  console.log(`ratio of medians: ${(remoteSummary.median / localSummary.median).toFixed(2)}x (target under 1.2x), difference ${(remoteSummary.median - localSummary.median).toFixed(0)} ms`)
} finally {
  await Promise.all([requester, ...providers].map(async node => { await node.stop() }))
  await standIn.close()
  await rm(baseDir, { recursive: true, force: true })
}
process.exit(0)
