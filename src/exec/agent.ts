import type { AgentResult, AgentTask } from './types.js'

/**
 * Settings of the executor's agent. `{prompt}` and `{model}` in `command`
 * are replaced for each task.
 */
export interface AgentSettings {
  command: string[]
  model: string
  /** Tools the agent may use; passed with `--allowedTools`. */
  allowedTools: string[]
  /**
   * The model API key, passed only into the sandbox of an agent stage as
   * `ANTHROPIC_API_KEY`. Never logged, never in a result or an error.
   */
  apiKey?: string
  /** Base URL of the model API inside the sandbox; the API's own when missing. */
  baseUrl?: string
}

/** Default agent: the Claude Code CLI in print mode with stream-json output. */
export const DEFAULT_AGENT_COMMAND = ['claude', '--print', '{prompt}', '--output-format', 'stream-json', '--verbose', '--model', '{model}']
export const DEFAULT_AGENT_MODEL = 'sonnet'
/** Name of the node's environment variable that contains the agent's API key. */
export const DEFAULT_AGENT_API_KEY_ENV = 'ANTHROPIC_API_KEY'
/** File tools only: the agent edits the workspace and runs no commands. */
export const DEFAULT_AGENT_TOOLS = ['Read', 'Write', 'Edit', 'Glob', 'Grep']

/** Builds the agent's command line for one task. */
export function agentCommand (settings: AgentSettings, task: AgentTask): string[] {
  const model = task.model ?? settings.model
  const command = settings.command.map(part => part.replaceAll('{prompt}', task.prompt).replaceAll('{model}', model))
  if (settings.allowedTools.length > 0) {
    command.push('--allowedTools', settings.allowedTools.join(','))
  }
  return command
}

/** Variables the agent needs besides the proxy ones; the key goes nowhere else. */
export function agentEnvironment (settings: AgentSettings): Record<string, string> {
  const env: Record<string, string> = {
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1'
  }
  if (settings.apiKey !== undefined) {
    env.ANTHROPIC_API_KEY = settings.apiKey
  }
  if (settings.baseUrl !== undefined) {
    env.ANTHROPIC_BASE_URL = settings.baseUrl
  }
  return env
}

/**
 * Finds the last `"type":"result"` line of the agent's stream-json output
 * and reads its output text, error flag, token usage and cost. Returns
 * undefined when there is none (the agent died or printed something else).
 */
export function parseAgentResult (stdout: string): AgentResult | undefined {
  const lines = stdout.split('\n')
  for (let index = lines.length - 1; index >= 0; index--) {
    const line = lines[index]?.trim() ?? ''
    if (!line.startsWith('{') || !line.includes('"result"')) {
      continue
    }
    const parsed = parseJson(line)
    if (parsed?.type === 'result') {
      return toAgentResult(parsed)
    }
  }
  return undefined
}

function parseJson (line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line)
    return value != null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

function toAgentResult (line: Record<string, unknown>): AgentResult {
  const usage = (line.usage != null && typeof line.usage === 'object' ? line.usage : {}) as Record<string, unknown>
  const count = (value: unknown): number => typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0
  const result: AgentResult = {
    output: typeof line.result === 'string' ? line.result : '',
    isError: line.is_error === true,
    usage: {
      inputTokens: count(usage.input_tokens),
      outputTokens: count(usage.output_tokens),
      cacheReadInputTokens: count(usage.cache_read_input_tokens),
      cacheCreationInputTokens: count(usage.cache_creation_input_tokens),
      costUsd: count(line.total_cost_usd)
    }
  }
  if (typeof line.num_turns === 'number') {
    result.numTurns = line.num_turns
  }
  return result
}
