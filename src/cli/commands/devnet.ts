import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_API_PORT } from '../../node/config.js'
import { Option } from 'commander'
import { ConfigError, EmdxError } from '../../node/errors.js'
import { silentLogger } from '../../node/logger.js'
import { startMessagesApiStandIn } from '../../standin/messages-api.js'
import { formatTable } from '../output.js'
import type { NodeStatus } from '../../node/node.js'
import type { ChildProcess } from 'node:child_process'
import type { Command } from 'commander'

interface DevnetOptions {
  nodes: string
  baseDir: string
  apiPort: string
  shareCpu?: string
  shareMem: string
  fresh?: boolean
  offline?: boolean
  runtime?: string
}

/** Model access of the devnet's agents: a stand-in on loopback, the user's key, or none. */
interface AgentAccess {
  args: string[]
  env: NodeJS.ProcessEnv
  description: string
  close: () => Promise<void>
}

interface DevnetNode {
  name: string
  dataDir: string
  apiPort: number
  logFile: string
  child: ChildProcess
  status?: NodeStatus
}

const MAX_NODES = 20
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 20_000

const binPath = fileURLToPath(new URL('../../../bin/emdx-node.js', import.meta.url))

export function registerDevnetCommand (program: Command): void {
  program.command('devnet')
    .description('start a small emdx network of several nodes on this machine (loopback only); Ctrl-C stops them all')
    .option('--nodes <n>', `number of nodes, 1 to ${MAX_NODES}`, '3')
    .option('--base-dir <path>', 'folder holding one data directory per node', path.join(os.homedir(), '.emdx-devnet'))
    .option('--api-port <port>', 'API port of the first node; node i uses this port + i', String(DEFAULT_API_PORT))
    .option('--share-cpu <n>', 'CPUs each node shares (default 1)')
    .option('--share-mem <size>', 'memory each node shares', '1g')
    .option('--fresh', 'delete the nodes\' data directories first (new identities, empty ledgers)')
    .option('--offline', 'serve a scripted stand-in of the model API on loopback to the nodes\' agents, so cascades run without a model key; its output is labelled and is not a model\'s')
    .addOption(new Option('--runtime <runtime>', 'sandbox runtime of every node (default auto)').choices(['auto', 'runsc', 'runc', 'bwrap']))
    .action(async (options: DevnetOptions) => {
      await runDevnet(options)
    })
}

function parseDevnetOptions (options: DevnetOptions): { count: number, apiPort: number } {
  const count = Number(options.nodes)
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) {
    throw new ConfigError(`invalid --nodes "${options.nodes}": expected a whole number from 1 to ${MAX_NODES}`)
  }
  const apiPort = Number(options.apiPort)
  if (!Number.isInteger(apiPort) || apiPort < 1 || apiPort + count - 1 > 65535) {
    throw new ConfigError(`invalid --api-port "${options.apiPort}": expected a port such that port + ${count - 1} is at most 65535`)
  }
  return { count, apiPort }
}

async function runDevnet (options: DevnetOptions): Promise<void> {
  const { count, apiPort } = parseDevnetOptions(options)
  const baseDir = path.resolve(options.baseDir)
  await checkApiPortsFree(apiPort, count)
  if (options.fresh === true) {
    await rm(baseDir, { recursive: true, force: true })
  }
  await mkdir(baseDir, { recursive: true, mode: 0o700 })

  const agents = await agentAccess(options)
  const nodes: DevnetNode[] = []
  const stopAll = async (): Promise<void> => {
    await stopNodes(nodes)
    await agents.close()
  }
  let stopping = false
  const onSignal = (): void => {
    if (stopping) {
      return
    }
    stopping = true
    process.stdout.write('\nstopping the devnet...\n')
    stopAll().then(() => { process.exit(0) }, () => { process.exit(1) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    process.stdout.write(`starting ${count} node${count === 1 ? '' : 's'} in ${baseDir}; agents: ${agents.description}\n`)
    for (let index = 0; index < count; index++) {
      const bootstrap = index === 0 ? [] : (nodes[0]?.status?.addresses.slice(0, 1) ?? [])
      const node = spawnNode(baseDir, index, apiPort + index, bootstrap, options, agents)
      nodes.push(node)
      node.status = await waitForNode(node)
    }

    if (count > 1) {
      process.stdout.write('waiting for the nodes to find each other...\n')
      await waitForMesh(nodes)
    }
  } catch (err) {
    stopping = true
    await stopAll()
    throw err
  }

  printDevnet(nodes)
}

/**
 * Chooses how agents reach a model. Offline, a stand-in serves them on
 * loopback, reached through each node's egress proxy with a key made up for
 * this devnet. With ANTHROPIC_API_KEY set, agents may reach the Anthropic
 * API. Otherwise agents have no model, and the nodes offer only command
 * stages.
 */
async function agentAccess (options: DevnetOptions): Promise<AgentAccess> {
  if (options.offline === true) {
    const apiKey = `sk-emdx-devnet-${randomBytes(16).toString('hex')}`
    const standIn = await startMessagesApiStandIn({ logger: silentLogger(), expectedApiKey: apiKey })
    return {
      args: ['--agent-base-url', standIn.url, '--agent-egress', `127.0.0.1:${standIn.port}`, '--agent-model', 'claude-stand-in'],
      env: { ANTHROPIC_API_KEY: apiKey },
      description: `scripted stand-in at ${standIn.url} (offline; its output is labelled and is not a model's)`,
      close: async () => { await standIn.close() }
    }
  }
  if (process.env.ANTHROPIC_API_KEY !== undefined && process.env.ANTHROPIC_API_KEY !== '') {
    return { args: ['--agent-egress', 'api.anthropic.com:443'], env: {}, description: 'the Claude API with your ANTHROPIC_API_KEY', close: async () => {} }
  }
  return { args: [], env: {}, description: 'none (set ANTHROPIC_API_KEY, or pass --offline for a stand-in), so only command stages run', close: async () => {} }
}

function spawnNode (baseDir: string, index: number, apiPort: number, bootstrap: string[], options: DevnetOptions, agents: AgentAccess): DevnetNode {
  const name = `node-${index}`
  const dataDir = path.join(baseDir, name)
  const logFile = path.join(baseDir, `${name}.log`)

  const args = [
    binPath, 'start',
    '--data-dir', dataDir,
    '--api-port', String(apiPort),
    '--port', '0',
    '--listen-host', '127.0.0.1',
    '--no-mdns',
    '--share-mem', options.shareMem,
    '--log-format', 'json',
    '--stop-when-stdin-closes'
  ]
  if (options.shareCpu !== undefined) {
    args.push('--share-cpu', options.shareCpu)
  }
  if (options.runtime !== undefined) {
    args.push('--runtime', options.runtime)
  }
  args.push(...agents.args)
  for (const address of bootstrap) {
    args.push('--bootstrap', address)
  }

  const log = openSync(logFile, 'a')
  // Each node gets its own process group, so a Ctrl-C in the terminal reaches
  // only the devnet, which then stops the nodes once and in order. The stdin
  // pipe stops a node when the devnet dies without cleaning up.
  const child = spawn(process.execPath, args, { stdio: ['pipe', log, log], detached: true, env: { ...process.env, ...agents.env } })
  closeSync(log)
  return { name, dataDir, apiPort, logFile, child }
}

/**
 * Fails when one of the devnet's API ports is taken, before any node
 * starts. Otherwise the readiness check would take an emdx-node already
 * listening there, such as another devnet's, for a node of this one.
 */
async function checkApiPortsFree (apiPort: number, count: number): Promise<void> {
  for (let port = apiPort; port < apiPort + count; port++) {
    if (await portIsFree(port)) {
      continue
    }
    const running = await runningNodeAt(port)
    const holder = running === undefined ? 'is in use' : `is in use by the emdx-node ${running}`
    throw new EmdxError('ERR_DEVNET', `API port ${port} on 127.0.0.1 ${holder}; stop the devnet or node using it, or pass --api-port with ${count} free ports from it on`)
  }
}

async function portIsFree (port: number): Promise<boolean> {
  const server = net.createServer()
  return await new Promise(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/** Returns the peer id of an emdx-node whose API listens on the port, if any. */
async function runningNodeAt (port: number): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/api/v1/status`, { signal: AbortSignal.timeout(2000) })
    return response.ok ? (await response.json() as NodeStatus).peerId : undefined
  } catch {
    return undefined
  }
}

async function waitForNode (node: DevnetNode): Promise<NodeStatus> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (node.child.exitCode !== null) {
      throw new EmdxError('ERR_DEVNET', `${node.name} exited with code ${node.child.exitCode} while starting; its log ${node.logFile} ends with:\n${tail(node.logFile)}`)
    }
    try {
      const response = await fetch(`http://127.0.0.1:${node.apiPort}/api/v1/status`, { signal: AbortSignal.timeout(2000) })
      if (response.ok) {
        return await response.json() as NodeStatus
      }
    } catch {
      // Not listening yet.
    }
    await sleep(200)
  }
  throw new EmdxError('ERR_DEVNET', `${node.name} did not start within ${READY_TIMEOUT_MS / 1000} s; see ${node.logFile}`)
}

/** Waits until every node has a connection to every other, or gives up quietly after a while. */
async function waitForMesh (nodes: DevnetNode[]): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const statuses = await Promise.all(nodes.map(async node => await fetchStatus(node)))
    if (statuses.every(status => status !== undefined && status.connectedPeers >= nodes.length - 1)) {
      statuses.forEach((status, index) => { (nodes[index] as DevnetNode).status = status })
      return
    }
    await sleep(250)
  }
  process.stdout.write('not every node is connected to every other yet; "emdx-node peers" shows the current state\n')
}

async function fetchStatus (node: DevnetNode): Promise<NodeStatus | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${node.apiPort}/api/v1/status`, { signal: AbortSignal.timeout(2000) })
    return response.ok ? await response.json() as NodeStatus : undefined
  } catch {
    return undefined
  }
}

function printDevnet (nodes: DevnetNode[]): void {
  const rows = nodes.map(node => [
    node.name,
    node.status?.peerId ?? '?',
    `http://127.0.0.1:${node.apiPort}`,
    String(node.status?.connectedPeers ?? 0),
    node.logFile
  ])
  const first = nodes[0] as DevnetNode
  const apiFlag = (node: DevnetNode): string => node.apiPort === DEFAULT_API_PORT ? '' : ` --api-port ${node.apiPort}`
  const examples: Array<[string, string]> = [[`emdx-node status${apiFlag(first)}`, first.name]]
  const second = nodes[1]
  if (second !== undefined) {
    examples.push([`emdx-node peers${apiFlag(second)}`, second.name])
  }
  const width = Math.max(...examples.map(([command]) => command.length))
  process.stdout.write([
    '',
    formatTable(['NODE', 'PEER ID', 'API', 'PEERS', 'LOG'], rows),
    '',
    'The devnet is running; press Ctrl-C to stop every node.',
    'Try:',
    ...examples.map(([command, name]) => `  ${command.padEnd(width)}  # ${name}`),
    ''
  ].join('\n'))
}

async function stopNodes (nodes: DevnetNode[]): Promise<void> {
  await Promise.all(nodes.map(async node => {
    if (node.child.exitCode !== null || node.child.signalCode !== null) {
      return
    }
    const exited = new Promise<void>(resolve => node.child.once('exit', () => { resolve() }))
    node.child.kill('SIGTERM')
    const timer = setTimeout(() => { node.child.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }))
}

function tail (file: string): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-10).join('\n')
  } catch {
    return '(no log)'
  }
}
