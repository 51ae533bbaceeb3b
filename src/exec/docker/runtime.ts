import { PassThrough } from 'node:stream'
import { removeQuietly } from './container.js'
import type { SandboxIsolation } from '../types.js'
import type { Logger } from '../../node/logger.js'
import type Docker from 'dockerode'

export type DockerRuntimeSetting = 'auto' | 'runsc' | 'runc'

/** The runtime a Docker backend uses, and the isolation it really gives. */
export interface DockerRuntime {
  runtime: 'runsc' | 'runc'
  isolation: SandboxIsolation
  /** Reason gVisor is not in use, when it was requested or listed. */
  reason?: string
}

/** Time allowed for the smoke container. */
const SMOKE_TIMEOUT_MS = 30_000

/**
 * Chooses the runtime: `runsc` only when the daemon lists it and a smoke
 * container proves that it is gVisor, `runc` otherwise. A runtime entry
 * named `runsc` that points at another OCI runtime passes the listing but
 * not the smoke check, so the node never claims gVisor without it.
 */
export async function detectDockerRuntime (docker: Docker, setting: DockerRuntimeSetting, image: string, logger: Logger): Promise<DockerRuntime> {
  if (setting === 'runc') {
    return { runtime: 'runc', isolation: 'container' }
  }
  const info = await docker.info() as { Runtimes?: Record<string, unknown> }
  if (info.Runtimes?.runsc === undefined) {
    const reason = 'the Docker daemon lists no runsc runtime, so stages run under runc; install gVisor and register it as runsc for a stronger sandbox'
    return { runtime: 'runc', isolation: 'container', reason }
  }

  const evidence = await smokeTest(docker, image)
  if (evidence.gvisor) {
    logger.info('runtime runsc is gVisor')
    return { runtime: 'runsc', isolation: 'gvisor' }
  }
  const reason = `the runtime registered as runsc is not gVisor (its smoke container reported kernel "${evidence.kernel}" and no gVisor kernel log), so stages run under runc; point the runsc entry of the Docker daemon's runtimes at gVisor's runsc binary`
  logger.warn({ kernel: evidence.kernel }, 'runtime runsc failed the gVisor check')
  return { runtime: 'runc', isolation: 'container', reason }
}

interface SmokeEvidence {
  gvisor: boolean
  kernel: string
}

/**
 * Runs `dmesg` and `uname -r` under runsc. gVisor's own kernel log starts
 * with "Starting gVisor"; a real Linux kernel refuses `dmesg` to a process
 * without CAP_SYSLOG, or prints its own messages.
 */
async function smokeTest (docker: Docker, image: string): Promise<SmokeEvidence> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: ['/bin/sh', '-c', 'dmesg 2>&1 | head -n 20; echo "kernel=$(uname -r)"'],
    User: '1000:1000',
    NetworkDisabled: true,
    Labels: { 'emdx.smoke': 'runsc' },
    HostConfig: { Runtime: 'runsc', NetworkMode: 'none', CapDrop: ['ALL'], ReadonlyRootfs: true },
    abortSignal: AbortSignal.timeout(SMOKE_TIMEOUT_MS)
  })
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true })
    const output = new PassThrough()
    let text = ''
    output.on('data', (chunk: Buffer) => { text += chunk.toString('utf8') })
    docker.modem.demuxStream(stream, output, output)
    const waited = container.wait({ condition: 'next-exit', abortSignal: AbortSignal.timeout(SMOKE_TIMEOUT_MS) })
    await container.start({ abortSignal: AbortSignal.timeout(SMOKE_TIMEOUT_MS) })
    await waited
    await new Promise(resolve => setTimeout(resolve, 50))
    return {
      gvisor: /gVisor/i.test(text),
      kernel: /kernel=(\S*)/.exec(text)?.[1] ?? 'unknown'
    }
  } finally {
    await removeQuietly(container)
  }
}
