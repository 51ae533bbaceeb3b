import { formatBytes, formatDuration } from '../../node/units.js'
import { apiBaseUrl, requestJson } from '../api-client.js'
import { formatRows, formatTable, printJson } from '../output.js'
import type { SandboxInfo } from '../../exec/types.js'
import type { NodeStatus, PeerSummary } from '../../node/node.js'
import type { ApiTarget } from '../api-client.js'
import type { Command } from 'commander'

interface QueryOptions extends ApiTarget {
  json?: boolean
}

export function addApiOptions (command: Command): Command {
  return command
    .option('--api-port <port>', 'API port of the local node (default 7777, or EMDX_NODE_API_PORT)')
    .option('--api-url <url>', 'full API base URL, such as http://127.0.0.1:7777')
    .option('--json', 'print the API response as JSON, for scripts')
}

export function registerStatusCommands (program: Command): void {
  addApiOptions(program.command('status'))
    .description('show the local node: peer id, addresses, uptime, peers, routing table, shared resources')
    .action(async (options: QueryOptions) => {
      const status = await requestJson<NodeStatus>(apiBaseUrl(options), '/api/v1/status')
      if (options.json === true) {
        printJson(status)
        return
      }
      process.stdout.write(`${formatStatus(status)}\n`)
    })

  addApiOptions(program.command('peers'))
    .description('list the peers the local node is connected to')
    .action(async (options: QueryOptions) => {
      const { peers } = await requestJson<{ peers: PeerSummary[] }>(apiBaseUrl(options), '/api/v1/peers')
      if (options.json === true) {
        printJson({ peers })
        return
      }
      process.stdout.write(`${formatPeers(peers)}\n`)
    })
}

export function formatStatus (status: NodeStatus): string {
  const sharing = status.share.enabled
    ? `${status.share.cpus} CPU, ${formatBytes(status.share.memoryBytes)} memory`
    : 'off (submit only)'
  return formatRows([
    ['peer id', status.peerId],
    ['version', status.version],
    ['addresses', status.addresses.join('\n')],
    ['API', status.apiUrl],
    ['uptime', formatDuration(status.uptimeSeconds * 1000)],
    ['peers', String(status.connectedPeers)],
    ['routing table', `${status.routingTableSize} peers`],
    ['sharing', sharing],
    ['sandbox', formatSandbox(status.sandbox)]
  ])
}

/** Formats the sandbox for people: backend, runtime and isolation, then the reason it is not stronger. */
export function formatSandbox (sandbox: SandboxInfo | undefined): string {
  if (sandbox === undefined) {
    return 'unknown (older node)'
  }
  const summary = sandbox.backend === 'none'
    ? 'none: this node shares nothing'
    : `${sandbox.backend} (${sandbox.runtime}, ${sandbox.isolation} isolation)`
  return sandbox.reason === undefined ? summary : `${summary}\n${sandbox.reason}`
}

export function formatPeers (peers: PeerSummary[]): string {
  if (peers.length === 0) {
    return 'no connected peers (use --bootstrap, or mDNS on a LAN, to find some)'
  }
  const now = Date.now()
  const rows = peers.map(peer => [
    peer.peerId,
    peer.direction,
    formatDuration(now - Date.parse(peer.connectedSince)),
    peer.addresses[0] ?? ''
  ])
  return `${formatTable(['PEER', 'DIRECTION', 'CONNECTED', 'ADDRESS'], rows)}\n${peers.length} peer${peers.length === 1 ? '' : 's'}`
}
