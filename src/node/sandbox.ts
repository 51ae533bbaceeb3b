import { rmdir } from 'node:fs/promises'
import path from 'node:path'
import { createExecutor } from '../exec/create.js'
import type { SandboxExecutor } from '../exec/executor.js'
import type { SandboxInfo } from '../exec/types.js'
import type { NodeConfig } from './config.js'
import type { Logger } from './logger.js'

/** The node's sandbox: an executor when it can share, and what `status` reports either way. */
export interface NodeSandbox {
  executor?: SandboxExecutor
  info: SandboxInfo
  /** Cancels running stages, removes the sandboxes and the executor's empty folders. */
  stop: () => Promise<void>
}

/**
 * Returns the folder for workspaces and the egress socket. As root, the
 * bubblewrap backend runs sandboxes as the host user `nobody`, which must
 * reach its workspace. The data directory stays private (mode 0700), so the
 * folder is under /run, which only root can write.
 */
export function executorStateDir (config: NodeConfig, nodeId: string): string {
  if (process.getuid?.() === 0) {
    return path.join('/run/emdx-node', nodeId)
  }
  return path.join(config.dataDir, 'exec')
}

/**
 * Creates the executor from the node's settings. A node that shares nothing,
 * or finds no usable sandbox, gets none and a reason; it still starts.
 */
export async function startSandbox (config: NodeConfig, nodeId: string, logger: Logger, collect?: (jobId: string, workspacePath: string) => Promise<void>): Promise<NodeSandbox> {
  const stop = async (): Promise<void> => {}
  if (!config.share) {
    return { info: { backend: 'none', runtime: 'none', isolation: 'none', reason: 'sharing is off (--no-share)' }, stop }
  }

  const apiKey = process.env[config.agentApiKeyEnv]
  const stateDir = executorStateDir(config, nodeId)
  try {
    const created = await createExecutor({
      nodeId,
      stateDir,
      runtime: config.runtime,
      requireRuntime: config.requireRuntime,
      images: config.images,
      agentEgress: config.agentEgress,
      agent: { command: config.agentCommand, model: config.agentModel, apiKey, baseUrl: config.agentBaseUrl },
      limits: { cpus: config.shareCpu, memoryBytes: config.shareMem },
      logger,
      collect
    })
    return { ...created, stop: async () => { await stopExecutor(created.executor, stateDir) } }
  } catch (err) {
    const reason = `the sandbox could not be set up: ${(err as Error).message}`
    logger.warn({ err, component: 'exec' }, 'no usable sandbox: this node shares nothing')
    return { info: { backend: 'none', runtime: 'none', isolation: 'none', reason }, stop }
  }
}

/** Closes the executor, then removes its folders when they are empty; anything left in them stays. */
async function stopExecutor (executor: SandboxExecutor | undefined, stateDir: string): Promise<void> {
  await executor?.close()
  await rmdir(path.join(stateDir, 'workspaces')).catch(() => {})
  await rmdir(stateDir).catch(() => {})
}
