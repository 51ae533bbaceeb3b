/**
 * Turns one line of an agent's stream-json output into a short progress line
 * for people, or undefined for lines that say nothing new (usage records,
 * the final result, which arrives with the stage's result anyway). Lines
 * that do not parse are dropped too: the sandbox cuts very long lines into
 * pieces, and a piece of JSON tells a person nothing.
 */
export function summarizeAgentLine (line: string): string | undefined {
  let event: { type?: unknown, subtype?: unknown, model?: unknown, message?: { content?: unknown } }
  try {
    event = JSON.parse(line)
  } catch {
    return undefined
  }
  if (event === null || typeof event !== 'object') {
    return undefined
  }

  if (event.type === 'system' && event.subtype === 'init') {
    return `agent started${typeof event.model === 'string' ? ` (model ${event.model})` : ''}`
  }
  if (event.type !== 'assistant' || !Array.isArray(event.message?.content)) {
    return undefined
  }
  const parts = (event.message.content as Array<{ type?: unknown, name?: unknown, text?: unknown, input?: Record<string, unknown> }>)
    .map(part => {
      if (part.type === 'tool_use' && typeof part.name === 'string') {
        const target = part.input?.file_path ?? part.input?.command ?? part.input?.pattern ?? ''
        return `tool ${part.name}${typeof target === 'string' && target !== '' ? ` ${target.slice(0, 120)}` : ''}`
      }
      if (part.type === 'text' && typeof part.text === 'string' && part.text.trim() !== '') {
        const text = part.text.trim().replace(/\s+/g, ' ')
        return `agent: ${text.length > 160 ? `${text.slice(0, 157)}...` : text}`
      }
      return undefined
    })
    .filter((part): part is string => part !== undefined)
  return parts.length === 0 ? undefined : parts.join('; ')
}
