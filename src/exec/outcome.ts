import { formatBytes, formatDuration } from '../node/units.js'
import type { StageLimits, StageOutcome } from './types.js'

/** Describes for people why a run ended this way and what to change. */
export function describeOutcome (outcome: StageOutcome, exitCode: number | null, limits: StageLimits): string {
  switch (outcome) {
    case 'succeeded':
      return 'the stage exited with code 0'
    case 'failed':
      return `the stage exited with code ${String(exitCode)}; see its output and log lines`
    case 'timed_out':
      return `the stage ran past its deadline of ${formatDuration(limits.timeoutMs)} and was killed; raise the timeout or make the stage finish sooner`
    case 'out_of_memory':
      return `the stage used more than its memory limit of ${formatBytes(limits.memoryBytes)} and the kernel killed it; raise the memory limit or use less memory`
    case 'output_limit':
      return `the stage printed more than its output limit of ${formatBytes(limits.outputBytes)} and was killed; print less, or write large results to files in the workspace`
    case 'disk_limit':
      return `the stage filled its workspace limit of ${formatBytes(limits.workspaceBytes)}; raise the workspace limit or write less`
    case 'cancelled':
      return 'the stage was cancelled and its sandbox killed'
  }
}
