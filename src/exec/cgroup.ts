import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises'
import path from 'node:path'

const CGROUP_ROOT = '/sys/fs/cgroup'

/** Resource use read from a cgroup. */
export interface CgroupStats {
  cpuSeconds: number
  peakMemoryBytes: number
  /** Processes the kernel's OOM killer killed in this cgroup. */
  oomKills: number
}

/**
 * The folders of one cgroup: one per controller on cgroup v1, the same
 * folder for all on cgroup v2.
 */
export interface CgroupPaths {
  version: 1 | 2
  memory: string
  cpu: string
  cpuacct: string
  pids: string
}

export function cgroupVersion (): 1 | 2 {
  return existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers')) ? 2 : 1
}

/** Reads the cgroup folders of a running process from `/proc/PID/cgroup`. */
export async function cgroupPathsOfProcess (pid: number): Promise<CgroupPaths> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8')
  const byController = new Map<string, string>()
  for (const line of text.trim().split('\n')) {
    const [, controllers = '', relative = ''] = line.split(':')
    for (const controller of controllers.split(',')) {
      byController.set(controller, relative)
    }
  }

  if (cgroupVersion() === 2) {
    const folder = path.join(CGROUP_ROOT, byController.get('') ?? '/')
    return { version: 2, memory: folder, cpu: folder, cpuacct: folder, pids: folder }
  }
  const folder = (controller: string): string => path.join(CGROUP_ROOT, controller, byController.get(controller) ?? '/')
  return { version: 1, memory: folder('memory'), cpu: folder('cpu'), cpuacct: folder('cpuacct'), pids: folder('pids') }
}

/** Returns the folders of the cgroup `parent/name` below the root of each controller. */
export function cgroupPathsNamed (parent: string, name: string): CgroupPaths {
  if (cgroupVersion() === 2) {
    const folder = path.join(CGROUP_ROOT, parent, name)
    return { version: 2, memory: folder, cpu: folder, cpuacct: folder, pids: folder }
  }
  const folder = (controller: string): string => path.join(CGROUP_ROOT, controller, parent, name)
  return { version: 1, memory: folder('memory'), cpu: folder('cpu'), cpuacct: folder('cpuacct'), pids: folder('pids') }
}

function folders (paths: CgroupPaths): string[] {
  return [...new Set([paths.memory, paths.cpu, paths.cpuacct, paths.pids])]
}

/** Reads CPU time, peak memory and OOM kills; a value that cannot be read is 0. */
export async function readCgroupStats (paths: CgroupPaths): Promise<CgroupStats> {
  if (paths.version === 2) {
    const cpuStat = parseKeyValues(await readOptional(path.join(paths.cpu, 'cpu.stat')))
    const events = parseKeyValues(await readOptional(path.join(paths.memory, 'memory.events')))
    const peak = Number(await readOptional(path.join(paths.memory, 'memory.peak')))
    return {
      cpuSeconds: (cpuStat.get('usage_usec') ?? 0) / 1e6,
      peakMemoryBytes: Number.isFinite(peak) ? peak : 0,
      oomKills: events.get('oom_kill') ?? 0
    }
  }

  const usage = Number(await readOptional(path.join(paths.cpuacct, 'cpuacct.usage')))
  const peak = Number(await readOptional(path.join(paths.memory, 'memory.max_usage_in_bytes')))
  const oom = parseKeyValues(await readOptional(path.join(paths.memory, 'memory.oom_control')))
  return {
    cpuSeconds: Number.isFinite(usage) ? usage / 1e9 : 0,
    peakMemoryBytes: Number.isFinite(peak) ? peak : 0,
    oomKills: oom.get('oom_kill') ?? 0
  }
}

async function readOptional (file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch {
    return ''
  }
}

function parseKeyValues (text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/)
    if (key !== undefined && key !== '' && value !== undefined) {
      values.set(key, Number(value))
    }
  }
  return values
}

/** Limits written into a cgroup the node created. */
export interface CgroupLimits {
  memoryBytes: number
  cpus: number
  pids: number
}

/** Creates a cgroup with the limits; throws when the node cannot write cgroups. */
export async function createCgroup (paths: CgroupPaths, limits: CgroupLimits): Promise<void> {
  for (const folder of folders(paths)) {
    await mkdir(folder, { recursive: true })
  }
  await setCgroupLimits(paths, limits)
}

/** Writes memory (swap included), CPU and pids limits into an existing cgroup. */
export async function setCgroupLimits (paths: CgroupPaths, limits: CgroupLimits): Promise<void> {
  const periodUs = 100_000
  const quotaUs = Math.max(1000, Math.round(limits.cpus * periodUs))

  if (paths.version === 2) {
    await writeFile(path.join(paths.memory, 'memory.max'), String(limits.memoryBytes))
    await writeFile(path.join(paths.memory, 'memory.swap.max'), '0').catch(() => {})
    await writeFile(path.join(paths.cpu, 'cpu.max'), `${quotaUs} ${periodUs}`)
    await writeFile(path.join(paths.pids, 'pids.max'), String(limits.pids))
    return
  }
  await writeFile(path.join(paths.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes))
  // memory.memsw.* exists only when the kernel accounts swap; without it the
  // machine has no swap to escape to anyway.
  await writeFile(path.join(paths.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {})
  await writeFile(path.join(paths.cpu, 'cpu.cfs_period_us'), String(periodUs))
  await writeFile(path.join(paths.cpu, 'cpu.cfs_quota_us'), String(quotaUs))
  await writeFile(path.join(paths.pids, 'pids.max'), String(limits.pids))
}

/** Returns the files a process writes its pid into to join the cgroup, one per controller folder. */
export function procsFiles (paths: CgroupPaths): string[] {
  return folders(paths).map(folder => path.join(folder, 'cgroup.procs'))
}

/** Pids of the processes still in the cgroup. */
export async function cgroupProcesses (paths: CgroupPaths): Promise<number[]> {
  const pids = new Set<number>()
  for (const file of procsFiles(paths)) {
    for (const line of (await readOptional(file)).split('\n')) {
      const pid = Number.parseInt(line, 10)
      if (Number.isInteger(pid)) {
        pids.add(pid)
      }
    }
  }
  return [...pids]
}

/**
 * Sends SIGKILL to every process in the cgroup once; SIGKILL also ends
 * stopped processes. Returns how many were signalled; a process the node
 * may not signal (EPERM) counts as not signalled.
 */
export async function killCgroupProcesses (paths: CgroupPaths): Promise<number> {
  let signalled = 0
  for (const pid of await cgroupProcesses(paths)) {
    try {
      process.kill(pid, 'SIGKILL')
      signalled++
    } catch {
      // Gone already, or not ours to signal.
    }
  }
  return signalled
}

/**
 * Kills every process left in the cgroup, then removes its folders. SIGKILL
 * also ends stopped processes. Returns how many processes were killed.
 */
export async function removeCgroup (paths: CgroupPaths): Promise<number> {
  let killed = 0
  for (let attempt = 0; attempt < 50; attempt++) {
    if ((await cgroupProcesses(paths)).length === 0) {
      break
    }
    killed += await killCgroupProcesses(paths)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  for (const folder of folders(paths)) {
    await rmdir(folder).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') {
        throw err
      }
    })
  }
  return killed
}

/** Removes the empty folders of `parent` in every controller; folders still in use stay. */
export async function removeEmptyCgroupParent (parent: string): Promise<void> {
  const paths = cgroupPathsNamed(parent, '')
  for (const folder of folders(paths)) {
    await rmdir(folder).catch(() => {})
  }
}

/** Names of the cgroups below `parent` that the node created (for crash leftovers). */
export async function childCgroups (parent: string): Promise<string[]> {
  const base = cgroupVersion() === 2 ? path.join(CGROUP_ROOT, parent) : path.join(CGROUP_ROOT, 'memory', parent)
  try {
    const entries = await readdir(base, { withFileTypes: true })
    return entries.filter(entry => entry.isDirectory()).map(entry => entry.name)
  } catch {
    return []
  }
}
