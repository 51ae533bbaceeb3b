import path from 'node:path'
import { afterEach } from 'vitest'
import { loadConfig } from '../../src/node/config.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { makeTempDir } from './temp.js'
import type { NodeConfig, SettingsInput } from '../../src/node/config.js'
import type { NodeInit } from '../../src/node/node.js'

const running = new Set<EmdxNode>()

export interface TestNodeOptions extends SettingsInput {
  dataDir?: string
}

/** Settings for a node on loopback with free ports and no mDNS. */
export async function testConfig (options: TestNodeOptions = {}): Promise<NodeConfig> {
  const { dataDir, ...settings } = options
  return await loadConfig(dataDir ?? path.join(await makeTempDir('emdx-node-'), 'data'), {
    port: 0,
    apiPort: 0,
    listenHost: '127.0.0.1',
    mdns: false,
    ...settings
  })
}

/** Parts of the node's construction a test may set, beside its settings. */
export type TestNodeExtras = Omit<NodeInit, 'config' | 'logger'>

/** Starts a real node on loopback; it is stopped after the test. */
export async function startTestNode (options: TestNodeOptions = {}, extras: TestNodeExtras = {}): Promise<EmdxNode> {
  const node = await startSharedNode(options, extras)
  running.add(node)
  return node
}

/**
 * Starts a real node on loopback that outlives the test, for networks set up
 * once per describe block; the caller stops it with stopTestNode.
 */
export async function startSharedNode (options: TestNodeOptions = {}, extras: TestNodeExtras = {}): Promise<EmdxNode> {
  // Tests get a real sandbox only when they ask for one with skipSandbox: false.
  return await EmdxNode.start({ skipSandbox: true, ...extras, config: await testConfig(options), logger: silentLogger() })
}

export async function stopTestNode (node: EmdxNode): Promise<void> {
  running.delete(node)
  await node.stop()
}

/** Polls a condition every 100 ms until it holds or the time is up. */
export async function waitFor (condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await condition()) {
      return
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

afterEach(async () => {
  const nodes = [...running]
  running.clear()
  await Promise.all(nodes.map(async node => { await node.stop() }))
})
