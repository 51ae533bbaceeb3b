import { mkdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { BundleError } from '../../src/git/errors.js'
import { EXECUTOR_IDENTITY, commitWorkspace, prepareWorkspace } from '../../src/git/executor.js'
import { createBundle, fetchResult } from '../../src/git/requester.js'
import { commitFiles, createRepository, gitIn, newGit } from '../support/git-repo.js'
import { makeTempDir } from '../support/temp.js'
import type { Git } from '../../src/git/git.js'
import type { Stage } from '../../src/cascade/stages.js'
import type { CommittedWorkspace, PreparedWorkspace } from '../../src/git/executor.js'

interface Setup {
  dir: string
  git: Git
  repo: string
}

async function setup (): Promise<Setup> {
  const dir = await makeTempDir()
  const repo = await createRepository(path.join(dir, 'user-repo'), {
    'README.md': '# Dashboard\n',
    'src/theme.txt': 'light\n',
    'src/old.txt': 'to be removed\n'
  })
  return { dir, git: await newGit(), repo }
}

/** Runs the executor side for one stage: clone, let `agent` change files, commit, bundle. */
async function executeStage (
  { dir, git }: Setup,
  bundlePath: string,
  stage: Stage,
  agent: (workspace: string) => Promise<void>
): Promise<{ prepared: PreparedWorkspace, result: CommittedWorkspace }> {
  const job = path.join(dir, `job-${stage}`)
  await mkdir(path.join(job, 'workspace'), { recursive: true })
  const prepared = await prepareWorkspace({ git, bundlePath, workspaceDir: path.join(job, 'workspace'), gitDir: path.join(job, 'git'), docId: 12, stage })
  await agent(prepared.workspaceDir)
  const result = await commitWorkspace({ git, workspace: prepared, outFile: path.join(job, 'result.bundle'), message: `Cascade 12: ${stage} stage` })
  return { prepared, result }
}

async function implementDarkMode (workspace: string): Promise<void> {
  await writeFile(path.join(workspace, 'src/theme.txt'), 'dark\n')
  await mkdir(path.join(workspace, 'src/styles'))
  await writeFile(path.join(workspace, 'src/styles/dark.css'), 'body { background: #000; }\n')
  await unlink(path.join(workspace, 'src/old.txt'))
  await symlink('styles/dark.css', path.join(workspace, 'src/current.css'))
}

describe('git round trip', () => {
  it('fetches the agent commit as cascade branch', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'out', 'base.bundle') })
    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    const fetched = await fetchResult({ git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 12, stage: 'planned', baseCommit: sent.commit })

    expect(fetched).toEqual({ branch: 'cascade/12/planned', commit: result.commit })
    expect(gitIn(context.repo, ['rev-parse', 'cascade/12/planned'])).toBe(result.commit)
    expect(gitIn(context.repo, ['rev-parse', 'cascade/12/planned^'])).toBe(sent.commit)
    expect(gitIn(context.repo, ['show', 'cascade/12/planned:src/theme.txt'])).toBe('dark')
    expect(gitIn(context.repo, ['show', 'cascade/12/planned:src/styles/dark.css'])).toBe('body { background: #000; }')
    expect(gitIn(context.repo, ['ls-tree', '--name-only', 'cascade/12/planned', 'src/'])).not.toContain('src/old.txt')
    expect(gitIn(context.repo, ['ls-tree', 'cascade/12/planned', 'src/current.css'])).toMatch(/^120000 blob /)
    expect(gitIn(context.repo, ['log', '-1', '--format=%an <%ae>|%s', 'cascade/12/planned'])).toBe(`${EXECUTOR_IDENTITY.name} <${EXECUTOR_IDENTITY.email}>|Cascade 12: planned stage`)
  })

  it('lists the changed files', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })

    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    expect(result.changedFiles.sort()).toEqual(['src/current.css', 'src/old.txt', 'src/styles/dark.css', 'src/theme.txt'])
  })

  it('leaves working tree and HEAD alone', async () => {
    const context = await setup()
    await writeFile(path.join(context.repo, 'README.md'), '# Dashboard, edited but not committed\n')
    const statusBefore = gitIn(context.repo, ['status', '--porcelain'])
    const mainBefore = gitIn(context.repo, ['rev-parse', 'main'])
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const { prepared, result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    await fetchResult({ git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 12, stage: 'planned', baseCommit: sent.commit })

    expect(await readFile(path.join(prepared.workspaceDir, 'README.md'), 'utf8')).toBe('# Dashboard\n')
    expect(gitIn(context.repo, ['symbolic-ref', 'HEAD'])).toBe('refs/heads/main')
    expect(gitIn(context.repo, ['rev-parse', 'main'])).toBe(mainBefore)
    expect(gitIn(context.repo, ['status', '--porcelain'])).toBe(statusBefore)
    expect(await readFile(path.join(context.repo, 'src/theme.txt'), 'utf8')).toBe('light\n')
    expect(gitIn(context.repo, ['for-each-ref', '--format=%(refname)', 'refs/emdx-node/'])).toBe('')
  })

  it('chains from the previous stage branch', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const first = await executeStage(context, sent.bundlePath, 'analyzed', async () => {})
    await fetchResult({ git: context.git, repoDir: context.repo, bundlePath: first.result.bundlePath, docId: 12, stage: 'analyzed', baseCommit: sent.commit })

    const again = await createBundle({ git: context.git, repoDir: context.repo, branch: 'cascade/12/analyzed', outFile: path.join(context.dir, 'analyzed.bundle') })
    const second = await executeStage(context, again.bundlePath, 'planned', implementDarkMode)
    await fetchResult({ git: context.git, repoDir: context.repo, bundlePath: second.result.bundlePath, docId: 12, stage: 'planned', baseCommit: again.commit })

    expect(again.ref).toBe('refs/heads/cascade/12/analyzed')
    expect(gitIn(context.repo, ['rev-list', '--count', `${sent.commit}..cascade/12/planned`])).toBe('2')
  })

  it('commits an unchanged workspace too', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })

    const { result } = await executeStage(context, sent.bundlePath, 'prompt', async () => {})

    expect(result.changedFiles).toEqual([])
    expect(gitIn(context.repo, ['cat-file', '-t', sent.commit])).toBe('commit')
    expect(result.commit).not.toBe(sent.commit)
  })

  it('sends only the named branch', async () => {
    const context = await setup()
    gitIn(context.repo, ['branch', 'feature'])
    await commitFiles(context.repo, { 'secret-draft.txt': 'not for the executor\n' }, 'Draft on main')

    const sent = await createBundle({ git: context.git, repoDir: context.repo, branch: 'feature', outFile: path.join(context.dir, 'feature.bundle') })

    expect(gitIn(context.dir, ['bundle', 'list-heads', sent.bundlePath])).toBe(`${sent.commit} refs/heads/feature`)
    const draft = gitIn(context.repo, ['rev-parse', 'main'])
    const { prepared } = await executeStage(context, sent.bundlePath, 'planned', async () => {})
    expect(() => gitIn(context.dir, [`--git-dir=${prepared.gitDir}`, 'cat-file', '-e', draft])).toThrow()
  })

  it('fetching twice is harmless', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)
    const options = { git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 12, stage: 'planned' as const, baseCommit: sent.commit }

    await fetchResult(options)
    const second = await fetchResult(options)

    expect(second.commit).toBe(result.commit)
  })
})

describe('fetchResult rejections', () => {
  async function expectBundleError (promise: Promise<unknown>, code: string): Promise<BundleError> {
    const err = await promise.then(() => undefined, (caught: unknown) => caught)
    expect(err).toBeInstanceOf(BundleError)
    expect((err as BundleError).code).toBe(code)
    return err as BundleError
  }

  it('rejects another stage branch', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    const err = await expectBundleError(fetchResult({ git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 13, stage: 'planned' }), 'ERR_BUNDLE_REFS')

    expect(err.message).toContain('must contain only refs/heads/cascade/13/planned but has refs/heads/cascade/12/planned')
    expect(gitIn(context.repo, ['branch', '--list', 'cascade/*'])).toBe('')
  })

  it('rejects an existing different branch', async () => {
    const context = await setup()
    gitIn(context.repo, ['branch', 'cascade/12/planned'])
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    const err = await expectBundleError(fetchResult({ git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 12, stage: 'planned' }), 'ERR_BRANCH_CONFLICT')

    expect(err.message).toContain('git branch -D cascade/12/planned')
    expect(gitIn(context.repo, ['rev-parse', 'cascade/12/planned'])).toBe(sent.commit)
  })

  it('rejects history not from base', async () => {
    const context = await setup()
    const older = gitIn(context.repo, ['rev-parse', 'HEAD'])
    const base = await commitFiles(context.repo, { 'src/theme.txt': 'blue\n' }, 'Blue theme')

    // An executor that built on an older commit than the one it was sent.
    const clone = path.join(context.dir, 'executor-clone')
    gitIn(context.dir, ['clone', '--quiet', '--no-local', context.repo, clone])
    gitIn(clone, ['checkout', '--quiet', '-b', 'cascade/12/planned', older])
    await commitFiles(clone, { 'src/theme.txt': 'dark\n' }, 'Dark theme on the old base')
    const bundle = path.join(context.dir, 'wrong-base.bundle')
    gitIn(clone, ['bundle', 'create', '--quiet', bundle, 'cascade/12/planned', `^${older}`])

    const err = await expectBundleError(fetchResult({ git: context.git, repoDir: context.repo, bundlePath: bundle, docId: 12, stage: 'planned', baseCommit: base }), 'ERR_BUNDLE_HISTORY')

    expect(err.message).toContain(`does not descend from the commit ${base}`)
    expect(gitIn(context.repo, ['branch', '--list', 'cascade/*'])).toBe('')
    expect(gitIn(context.repo, ['for-each-ref', 'refs/emdx-node/'])).toBe('')
  })

  it('rejects missing prerequisite commits', async () => {
    const context = await setup()
    const other = await createRepository(path.join(context.dir, 'other'), { 'x.txt': 'x\n' })
    const root = gitIn(other, ['rev-parse', 'HEAD'])
    gitIn(other, ['checkout', '--quiet', '-b', 'cascade/12/planned'])
    await commitFiles(other, { 'y.txt': 'y\n' }, 'Unrelated')
    const bundle = path.join(context.dir, 'unrelated.bundle')
    gitIn(other, ['bundle', 'create', '--quiet', bundle, 'cascade/12/planned', `^${root}`])

    const err = await expectBundleError(fetchResult({ git: context.git, repoDir: context.repo, bundlePath: bundle, docId: 12, stage: 'planned' }), 'ERR_BUNDLE_INVALID')

    expect(err.message).toContain(`bundle ${bundle} was rejected by git bundle`)
  })

  it('keeps the limit for returned bundles', async () => {
    const context = await setup()
    const sent = await createBundle({ git: context.git, repoDir: context.repo, outFile: path.join(context.dir, 'base.bundle') })
    const { result } = await executeStage(context, sent.bundlePath, 'planned', implementDarkMode)

    const err = await expectBundleError(fetchResult({ git: context.git, repoDir: context.repo, bundlePath: result.bundlePath, docId: 12, stage: 'planned', limits: { maxBundleBytes: 100 } }), 'ERR_BUNDLE_TOO_LARGE')

    expect(err.message).toContain('over the limit of 100 bytes (maxBundleBytes)')
    await rm(result.bundlePath)
  })
})
