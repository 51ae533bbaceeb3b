import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import tar from 'tar-stream'
import { commitWorkspace, prepareWorkspace } from '../git/executor.js'
import type { Git } from '../git/git.js'
import type { Logger } from '../node/logger.js'
import type { RunnerResult, RunnerRun, RunnerSpec, StageRunner } from './runner.js'

/**
 * Registry of collect hooks by job id. The sandbox executor calls its one
 * collect hook with the job id and the workspace once a run's processes are
 * dead, and this registry passes the call to the job that registered it.
 */
export class WorkspaceCollectors {
  private readonly hooks = new Map<string, (workspacePath: string) => Promise<void>>()

  set (jobId: string, hook: (workspacePath: string) => Promise<void>): void {
    this.hooks.set(jobId, hook)
  }

  delete (jobId: string): void {
    this.hooks.delete(jobId)
  }

  /** The function to pass to the executor as its `collect` setting. */
  readonly collect = async (jobId: string, workspacePath: string): Promise<void> => {
    await this.hooks.get(jobId)?.(workspacePath)
  }
}

export interface RepositoryRunnerInit {
  runner: StageRunner
  collectors: WorkspaceCollectors
  git: Git
  /** Folder for the bundles, checkouts and repositories of running jobs. */
  workDir: string
  logger: Logger
}

/**
 * Runs stages that come with a git bundle. It checks the bundle out on branch
 * `cascade/{docId}/{stage}` outside the sandbox and passes the checkout to
 * the sandbox as the stage's input. Once the agent is done, it commits what
 * the agent changed and bundles the branch. Git runs outside the sandbox on data from
 * strangers, so every git step goes through the hardened `Git` and the
 * workspace checks of `src/git`. Stages without a bundle pass straight
 * through to the sandbox.
 */
export class RepositoryStageRunner implements StageRunner {
  private readonly init: RepositoryRunnerInit

  constructor (init: RepositoryRunnerInit) {
    this.init = init
  }

  async start (spec: RunnerSpec): Promise<RunnerRun> {
    const repository = spec.repository
    if (repository === undefined) {
      return await this.init.runner.start(spec)
    }

    const dir = path.join(this.init.workDir, spec.jobId)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    try {
      const bundlePath = path.join(dir, 'input.bundle')
      await writeFile(bundlePath, repository.bundle, { mode: 0o600 })
      const workspace = await prepareWorkspace({
        git: this.init.git,
        bundlePath,
        workspaceDir: await emptyFolder(path.join(dir, 'checkout')),
        gitDir: path.join(dir, 'repository.git'),
        docId: repository.docId,
        stage: repository.stage,
        signal: spec.signal
      })
      const archivePath = path.join(dir, 'input.tar')
      await packFolder(workspace.workspaceDir, archivePath)

      let collected: { bundle?: Uint8Array, error?: Error } = {}
      this.init.collectors.set(spec.jobId, async (workspacePath) => {
        collected = await this.commit(workspace, workspacePath, path.join(dir, 'result.bundle'), spec)
      })

      const run = await this.init.runner.start({ ...spec, repository: undefined, input: { archivePath } })
      const result = run.result
        .then(result => withBundle(result, collected))
        .finally(async () => {
          this.init.collectors.delete(spec.jobId)
          await rm(dir, { recursive: true, force: true })
        })
      return { progress: run.progress, result }
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      throw err
    }
  }

  private async commit (workspace: Awaited<ReturnType<typeof prepareWorkspace>>, workspacePath: string, outFile: string, spec: RunnerSpec): Promise<{ bundle?: Uint8Array, error?: Error }> {
    try {
      const committed = await commitWorkspace({
        git: this.init.git,
        workspace: { ...workspace, workspaceDir: workspacePath },
        outFile,
        message: `cascade: ${workspace.branch}\n\nChanges made by the agent of emdx-node job ${spec.jobId}.`
      })
      this.init.logger.info({ job: spec.jobId, branch: workspace.branch, files: committed.changedFiles.length }, 'committed the agent\'s changes')
      return { bundle: await readFile(committed.bundlePath) }
    } catch (err) {
      this.init.logger.warn({ job: spec.jobId, err }, 'the agent\'s changes could not be committed')
      return { error: err as Error }
    }
  }
}

/** Adds the committed bundle to a result, or turns it into a failure when the commit was refused. */
function withBundle (result: RunnerResult, collected: { bundle?: Uint8Array, error?: Error }): RunnerResult {
  if (collected.error !== undefined) {
    return { ...result, outcome: result.outcome === 'succeeded' ? 'failed' : result.outcome, message: `the workspace was not committed: ${collected.error.message}` }
  }
  if (collected.bundle === undefined && result.outcome === 'succeeded') {
    return { ...result, outcome: 'failed', message: 'the workspace was not collected, so no branch came back' }
  }
  return { ...result, bundle: collected.bundle }
}

async function emptyFolder (folder: string): Promise<string> {
  await mkdir(folder, { recursive: true, mode: 0o700 })
  return folder
}

/**
 * Writes a tar of a folder's files and folders. The checkout has nothing
 * else: links from the bundle are checked out as plain files.
 */
async function packFolder (root: string, outFile: string): Promise<void> {
  const pack = tar.pack()
  const writing = pipeline(pack, createWriteStream(outFile, { mode: 0o600 }))
  await addEntries(pack, root, '')
  pack.finalize()
  await writing
}

async function addEntries (pack: tar.Pack, root: string, relative: string): Promise<void> {
  for (const name of (await readdir(path.join(root, relative))).sort()) {
    const entryName = relative === '' ? name : `${relative}/${name}`
    const full = path.join(root, entryName)
    const info = await lstat(full)
    if (info.isDirectory()) {
      pack.entry({ name: `${entryName}/`, type: 'directory', mode: 0o755 })
      await addEntries(pack, root, entryName)
    } else if (info.isFile()) {
      const entry = pack.entry({ name: entryName, type: 'file', size: info.size, mode: info.mode & 0o111 ? 0o755 : 0o644 })
      await pipeline(createReadStream(full), entry)
    } else {
      throw new Error(`checkout entry ${entryName} is neither a file nor a folder`)
    }
  }
}
