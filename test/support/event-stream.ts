/** One server-sent event: its type (`message` when the stream names none) and its data. */
export interface StreamEvent {
  type: string
  data: string
}

export interface EventStreamReader {
  /** Reads events until one matches, and returns it; throws when the stream ends or the time is up. */
  next: (matches: (event: StreamEvent) => boolean, timeoutMs: number) => Promise<StreamEvent>
  /** Closes the connection, as a browser tab that goes away does. */
  close: () => void
}

/** Opens a server-sent event stream with fetch and reads it event by event. */
export async function openEventStream (url: string): Promise<EventStreamReader> {
  const controller = new AbortController()
  const response = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } })
  if (!response.ok || response.body === null) {
    throw new Error(`GET ${url} returned ${response.status}`)
  }
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''

  const readEvent = async (): Promise<StreamEvent> => {
    while (true) {
      const end = buffer.indexOf('\n\n')
      if (end >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const event = parseBlock(block)
        if (event !== undefined) {
          return event
        }
        continue
      }
      const { done, value } = await reader.read()
      if (done) {
        throw new Error(`the event stream ${url} ended`)
      }
      buffer += decoder.decode(value, { stream: true })
    }
  }

  return {
    next: async (matches, timeoutMs) => {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const timer = new Promise<never>((_resolve, reject) => {
          setTimeout(() => { reject(new Error(`no matching event on ${url} within ${timeoutMs} ms`)) }, Math.max(0, deadline - Date.now())).unref()
        })
        const event = await Promise.race([readEvent(), timer])
        if (matches(event)) {
          return event
        }
      }
      throw new Error(`no matching event on ${url} within ${timeoutMs} ms`)
    },
    close: () => { controller.abort() }
  }
}

/** Parses one block of `field: value` lines; undefined for a block of comments only. */
function parseBlock (block: string): StreamEvent | undefined {
  let type = 'message'
  const data: string[] = []
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) {
      type = line.slice(6).trim()
    } else if (line.startsWith('data:')) {
      data.push(line.slice(5).replace(/^ /, ''))
    }
  }
  return data.length === 0 ? undefined : { type, data: data.join('\n') }
}
