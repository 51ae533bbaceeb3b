import { randomBytes } from 'node:crypto'
import Docker from 'dockerode'
import { afterEach } from 'vitest'
import { LABEL_NODE } from '../../src/exec/docker/profile.js'
import { silentLogger } from '../../src/node/logger.js'
import { startMessagesApiStandIn } from '../../src/standin/messages-api.js'
import { TEST_IMAGE, TEST_ROOTFS } from '../exec/support.js'
import { startNodeProcess, stopProcess } from './processes.js'
import type { CascadeEvent } from '../../src/cascade/events.js'
import type { CascadeRecord } from '../../src/cascade/store.js'
import type { MessagesApiStandIn } from '../../src/standin/messages-api.js'
import type { NodeProcess } from './processes.js'

const KEY_ENV = 'EMDX_TEST_CASCADE_AGENT_KEY'

/** Real `emdx-node` processes on loopback: providers with Docker sandboxes and a requester that shares nothing. */
export interface CascadeNetwork {
  standIn: MessagesApiStandIn
  providers: NodeProcess[]
  requester: NodeProcess
  /** Restarts the requester on its data directory and API port, as after a crash. */
  restartRequester: () => Promise<NodeProcess>
}

const nodeIds: string[] = []
const standIns: MessagesApiStandIn[] = []

/**
 * Starts the stand-in model API, `providers` provider processes and a
 * requester process bootstrapped to the first provider, and waits until the
 * requester has found every provider with an agent to offer.
 */
export async function startCascadeNetwork (options: { providers: number, replyDelayMs?: number, requesterEnv?: NodeJS.ProcessEnv }): Promise<CascadeNetwork> {
  const apiKey = `sk-emdx-test-${randomBytes(12).toString('hex')}`
  const standIn = await startMessagesApiStandIn({ logger: silentLogger(), expectedApiKey: apiKey, replyDelayMs: options.replyDelayMs })
  standIns.push(standIn)
  const providerArgs = [
    '--runtime', 'runc',
    '--image', `${TEST_IMAGE}=${TEST_ROOTFS}`,
    '--share-mem', '1g',
    '--agent-base-url', standIn.url,
    '--agent-egress', `127.0.0.1:${standIn.port}`,
    '--agent-model', 'claude-stand-in',
    '--agent-api-key-env', KEY_ENV
  ]

  const providers: NodeProcess[] = []
  for (let index = 0; index < options.providers; index++) {
    const bootstrap = providers[0] === undefined ? [] : ['--bootstrap', providers[0].status.addresses[0] as string]
    const provider = await startNodeProcess([...providerArgs, ...bootstrap], { env: { [KEY_ENV]: apiKey } })
    nodeIds.push(provider.status.peerId)
    providers.push(provider)
  }

  const requesterArgs = ['--no-share', '--bootstrap', providers[0]?.status.addresses[0] as string]
  const requester = await startNodeProcess(requesterArgs, { env: options.requesterEnv })
  await waitForProviders(requester, options.providers)

  let current = requester
  return {
    standIn,
    providers,
    requester,
    restartRequester: async () => {
      current = await startNodeProcess(requesterArgs, { env: options.requesterEnv, dataDir: current.dataDir, apiPort: current.apiPort })
      await waitForProviders(current, providers.filter(provider => provider.child.exitCode === null && provider.child.signalCode === null).length)
      return current
    }
  }
}

async function waitForProviders (requester: NodeProcess, count: number): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const capacity = await (await fetch(`${requester.apiUrl}/api/v1/capacity?refresh=1`)).json() as { network: { providers: Array<{ agents: string[] }> } }
    if (capacity.network.providers.filter(provider => provider.agents.includes('claude')).length >= count) {
      return
    }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`the requester did not see ${count} providers within 60 s`)
}

export async function submitCascade (requester: NodeProcess, body: Record<string, unknown>): Promise<CascadeRecord> {
  const response = await fetch(`${requester.apiUrl}/api/v1/cascade`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (response.status !== 201) {
    throw new Error(`POST /api/v1/cascade failed with ${response.status}: ${await response.text()}`)
  }
  return await response.json() as CascadeRecord
}

export async function getCascade (requester: NodeProcess, id: string): Promise<CascadeRecord> {
  return await (await fetch(`${requester.apiUrl}/api/v1/cascade/${id}`)).json() as CascadeRecord
}

/**
 * Follows a cascade's server-sent events from its first one, calling
 * `onEvent` for each, until it completes, fails or is cancelled, or the
 * stream ends (as when the requester dies). Returns the events seen.
 */
export async function followCascade (requester: NodeProcess, id: string, onEvent: (event: CascadeEvent) => void = () => {}, timeoutMs = 240_000): Promise<CascadeEvent[]> {
  const events: CascadeEvent[] = []
  const response = await fetch(`${requester.apiUrl}/api/v1/events?cascade=${id}&since=0`, { signal: AbortSignal.timeout(timeoutMs) })
  const decoder = new TextDecoder()
  let buffered = ''
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true })
      let end = buffered.indexOf('\n\n')
      while (end >= 0) {
        const data = buffered.slice(0, end).split('\n').find(line => line.startsWith('data: '))
        buffered = buffered.slice(end + 2)
        end = buffered.indexOf('\n\n')
        if (data === undefined) {
          continue
        }
        const event = JSON.parse(data.slice(6)) as CascadeEvent
        events.push(event)
        onEvent(event)
        if (event.type === 'cascade_completed' || event.type === 'cascade_failed' || event.type === 'cascade_cancelled') {
          return events
        }
      }
    }
  } catch {
    // The requester went away; the caller decides what that means.
  }
  return events
}

/** Waits until the cascade leaves `running`, polling its record. */
export async function waitForCascadeEnd (requester: NodeProcess, id: string, timeoutMs = 240_000): Promise<CascadeRecord> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const record = await getCascade(requester, id)
    if (record.status !== 'running') {
      return record
    }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`cascade ${id} still running after ${timeoutMs} ms`)
}

/** Receipts the node recorded as requester (what it paid) and as executor (what it earned). */
export async function receiptsOf (node: NodeProcess): Promise<Array<{ role: string, jobId: string, stage: string, counterparty: string, delta: number }>> {
  const body = await (await fetch(`${node.apiUrl}/api/v1/receipts?limit=100`)).json() as { receipts: Array<{ role: string, jobId: string, stage: string, counterparty: string, delta: number }> }
  return body.receipts
}

export { stopProcess }

afterEach(async () => {
  await Promise.all(standIns.splice(0).map(async standIn => { await standIn.close() }))
  // Killed nodes leave their containers behind; their next start would remove them.
  const docker = new Docker()
  for (const node of nodeIds.splice(0)) {
    for (const container of await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${node}`] } }).catch(() => [])) {
      await docker.getContainer(container.Id).remove({ force: true }).catch(() => {})
    }
  }
})
