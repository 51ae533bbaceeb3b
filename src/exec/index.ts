/**
 * The stage executor's public surface: what the node and the stage protocol
 * use. Backends, cgroups and the launcher stay internal to this folder.
 */
export type {
  AgentResult,
  AgentTask,
  AgentUsage,
  LeftoverReport,
  SandboxBackend,
  SandboxInfo,
  SandboxIsolation,
  SandboxRuntime,
  StageExecutor,
  StageInput,
  StageLimits,
  StageMetrics,
  StageOutcome,
  StageProgress,
  StageResult,
  StageRun,
  StageSpec,
  StageState
} from './types.js'
export { createExecutor, agentSettings, DEFAULT_WARM_POOL_SIZE } from './create.js'
export type { CreatedExecutor, ExecutorSettings, RuntimeSetting } from './create.js'
export { SandboxExecutor } from './executor.js'
export type { EgressStats } from './egress/proxy.js'
export { DEFAULT_LIMITS } from './spec.js'
export { DEFAULT_IMAGE_NAME, defaultImage, parseImage } from './images.js'
export type { SandboxImage } from './images.js'
export { collectWorkspaceFiles } from './workspace.js'
export type { CollectedFile, CollectedFiles } from './workspace.js'
export { SandboxError, SandboxUnavailableError, StageInputError, StageSpecError } from './errors.js'
