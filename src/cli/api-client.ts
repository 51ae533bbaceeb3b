import { DEFAULT_API_PORT } from '../node/config.js'
import { EmdxError } from '../node/errors.js'

/** The local node's API could not be reached or returned an error. */
export class ApiRequestError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_API_REQUEST', message, options)
  }
}

export interface ApiTarget {
  apiUrl?: string
  apiPort?: string
}

const REQUEST_TIMEOUT_MS = 10_000

/** The base URL of the local node's API from `--api-url`, `--api-port` or the default port. */
export function apiBaseUrl (target: ApiTarget): string {
  if (target.apiUrl !== undefined) {
    return target.apiUrl.replace(/\/+$/, '')
  }
  const port = target.apiPort ?? process.env.EMDX_NODE_API_PORT ?? String(DEFAULT_API_PORT)
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new ApiRequestError(`invalid --api-port "${port}": expected a TCP port from 1 to 65535`)
  }
  return `http://127.0.0.1:${port}`
}

/** Sends one request to the node's API and returns its JSON body. */
export async function requestJson<T> (baseUrl: string, path: string, init: { method?: string, body?: unknown } = {}): Promise<T> {
  const url = `${baseUrl}${path}`
  let response: Response
  try {
    response = await fetch(url, {
      method: init.method ?? 'GET',
      headers: init.body === undefined ? undefined : { 'content-type': 'application/json' },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'ECONNREFUSED') {
      throw new ApiRequestError(`no emdx-node is running at ${baseUrl} (connection refused); start one with "emdx-node start", or pass --api-port`, { cause: err })
    }
    if ((err as Error).name === 'TimeoutError') {
      throw new ApiRequestError(`the emdx-node at ${baseUrl} did not respond within ${REQUEST_TIMEOUT_MS / 1000} s`, { cause: err })
    }
    throw new ApiRequestError(`request to ${url} failed: ${(err as Error).message}`, { cause: err })
  }

  const text = await response.text()
  let body: unknown
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    throw new ApiRequestError(`the emdx-node at ${baseUrl} returned a response that is not JSON (HTTP ${response.status}) for ${path}`)
  }

  if (!response.ok) {
    const message = (body as { message?: unknown } | undefined)?.message
    throw new ApiRequestError(`${path} failed with HTTP ${response.status}: ${typeof message === 'string' ? message : text}`)
  }
  return body as T
}
