import { spawn } from 'node:child_process'
import { SandboxError } from '../errors.js'
import type { ChildProcess } from 'node:child_process'

/** Port the egress proxy has on the sandbox's own loopback. */
export const SANDBOX_PROXY_PORT = 3128

/** Time allowed for the relay to listen inside the sandbox. */
const RELAY_READY_TIMEOUT_MS = 5000

/** Returns the variables that point an agent at the proxy inside its sandbox. */
export function proxyEnvironment (): Record<string, string> {
  const url = `http://127.0.0.1:${SANDBOX_PROXY_PORT}`
  return { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: '', no_proxy: '' }
}

/** A relay process; `stop` kills it. */
export interface Relay {
  pid: number
  stop: () => void
}

/**
 * Starts `socat` inside the network namespace of a sandbox process: it
 * listens on the sandbox's loopback and carries each connection to the
 * proxy's unix socket on the host. The sandbox itself has no network
 * interface but loopback, so this is its only way out. `setpriv
 * --pdeathsig` kills the relay when the node dies.
 *
 * NOTE: under gVisor the sandbox has its own network stack, so a relay in
 * the container's namespace cannot reach it; agent egress is refused there.
 */
export async function startRelay (sandboxPid: number, proxySocket: string, signal?: AbortSignal): Promise<Relay> {
  const child = spawn('nsenter', [
    '-t', String(sandboxPid), '-n', '--',
    'setpriv', '--pdeathsig', 'KILL', '--',
    'socat', '-d', '-d', `TCP-LISTEN:${SANDBOX_PROXY_PORT},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${proxySocket}`
  ], { stdio: ['ignore', 'ignore', 'pipe'] })

  await waitUntilListening(child, signal)
  return {
    pid: child.pid ?? 0,
    stop: () => { child.kill('SIGKILL') }
  }
}

async function waitUntilListening (child: ChildProcess, signal?: AbortSignal): Promise<void> {
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    const fail = (reason: string): void => {
      cleanup()
      child.kill('SIGKILL')
      reject(new SandboxError(`the egress relay did not start: ${reason}; check that nsenter, setpriv and socat are installed`))
    }
    const onData = (chunk: Buffer): void => {
      stderr += chunk.toString('utf8')
      if (stderr.includes('listening on')) {
        cleanup()
        resolve()
      }
    }
    const onExit = (code: number | null): void => { fail(`exited with code ${String(code)}: ${stderr.trim().slice(-500)}`) }
    const onError = (err: Error): void => { fail(err.message) }
    const onAbort = (): void => { fail('cancelled') }
    const timer = setTimeout(() => { fail(`not listening after ${RELAY_READY_TIMEOUT_MS} ms`) }, RELAY_READY_TIMEOUT_MS)
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
      child.off('error', onError)
      signal?.removeEventListener('abort', onAbort)
      // Keep reading, so that a relay logging more never blocks on a full pipe.
      child.stderr?.resume()
    }
    child.stderr?.on('data', onData)
    child.once('exit', onExit)
    child.once('error', onError)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
