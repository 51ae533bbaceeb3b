/**
 * Hosts several emdx nodes in one process for benchmarks: started by a
 * benchmark with the node count, how many of them share, and a bootstrap
 * address (`-` for none, to host the bootstrap node itself). Prints one JSON
 * line when every node is up, with their peer ids and addresses, then runs
 * until its standard input closes.
 *
 *   node --import tsx bench/support/swarm-worker.ts COUNT SHARING BOOTSTRAP|-
 */
import '../../src/node/polyfills.js'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '../../src/node/config.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { staticCapacity } from './static-capacity.js'

const count = Number(process.argv[2])
const sharing = Number(process.argv[3])
const bootstrap = process.argv[4] === '-' ? [] : [process.argv[4] as string]

const baseDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-swarm-'))
const nodes: EmdxNode[] = []
for (let index = 0; index < count; index++) {
  const config = await loadConfig(path.join(baseDir, `node-${index}`), {
    port: 0,
    apiPort: 0,
    listenHost: '127.0.0.1',
    mdns: false,
    bootstrap,
    share: index < sharing
  })
  nodes.push(await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true, capacity: index < sharing ? staticCapacity() : undefined }))
}
process.stdout.write(`${JSON.stringify({ ready: nodes.map(node => node.peerId.toString()), addresses: nodes.map(node => node.addresses()) })}\n`)

const shutdown = async (): Promise<void> => {
  await Promise.all(nodes.map(async node => { await node.stop() }))
  await rm(baseDir, { recursive: true, force: true })
  process.exit(0)
}
process.stdin.on('end', () => { void shutdown() })
process.stdin.resume()
