/**
 * Runs the requester side of bench/stage-overhead.ts in its own process, as
 * it would run on its own machine. It takes a data folder and the
 * executor's address, and prints `{"ready":true}` once it has the
 * executor's record. For each line `run` on its standard input it runs one
 * command stage (`true`) on the executor. It then prints `{"ms":N}`, the time
 * from opening the stage stream to having the countersigned receipt.
 *
 *   node --import tsx bench/support/remote-requester.ts DATA_DIR EXECUTOR_ADDRESS
 */
import '../../src/node/polyfills.js'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { queryCapacity } from '../../src/dht/capacity-protocol.js'
import { loadConfig } from '../../src/node/config.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { runRemoteStage } from '../../src/stage/requester.js'

const dataDir = process.argv[2] as string
const executorAddress = process.argv[3] as string
const executorPeer = peerIdFromString(multiaddr(executorAddress).getComponents().find(component => component.name === 'p2p')?.value ?? '')

const config = await loadConfig(dataDir, { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false, share: false, bootstrap: [executorAddress] })
const node = await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true })
while (node.libp2p.getConnections(executorPeer).length === 0) {
  await sleep(50)
}
const { record } = await queryCapacity(node.libp2p, executorPeer, { signal: AbortSignal.timeout(10_000) })
process.stdout.write(`${JSON.stringify({ ready: true })}\n`)

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== 'run') {
    continue
  }
  const started = performance.now()
  const outcome = await runRemoteStage({ libp2p: node.libp2p, signer: node.signer, encryptionKey: node.encryptionKey, logger: silentLogger(), ledger: node.ledger }, record, {
    kind: 'command',
    stage: 'command',
    payload: { kind: 'command', command: ['true'] },
    needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 },
    timeoutMs: 30_000,
    maxCredits: 1_000
  })
  const ms = performance.now() - started
  process.stdout.write(`${JSON.stringify(outcome.result.outcome === 'succeeded' ? { ms } : { error: `remote run ${outcome.result.outcome}: ${outcome.result.message ?? ''}` })}\n`)
}
await node.stop()
process.exit(0)
