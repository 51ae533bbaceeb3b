import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, link, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BundleError, WorkspaceError } from '../../src/git/errors.js'
import { commitWorkspace, prepareWorkspace } from '../../src/git/executor.js'
import { createBundle, fetchResult } from '../../src/git/requester.js'
import { commitFiles, createRepository, gitIn, newGit } from '../support/git-repo.js'
import { makeTempDir } from '../support/temp.js'
import type { Git } from '../../src/git/git.js'
import type { GitLimits } from '../../src/git/limits.js'
import type { PreparedWorkspace } from '../../src/git/executor.js'

async function rejection (promise: Promise<unknown>): Promise<Error & { code: string }> {
  const err = await promise.then(() => undefined, (caught: unknown) => caught)
  expect(err).toBeInstanceOf(Error)
  return err as Error & { code: string }
}

/** Creates a repository, bundles its main branch and returns what an executor needs. */
async function bundleOf (dir: string, files: Record<string, string>): Promise<{ git: Git, repo: string, bundlePath: string, commit: string }> {
  const git = await newGit()
  const repo = await createRepository(path.join(dir, 'source'), files)
  const sent = await createBundle({ git, repoDir: repo, outFile: path.join(dir, 'base.bundle') })
  return { git, repo, bundlePath: sent.bundlePath, commit: sent.commit }
}

async function jobFolders (dir: string): Promise<{ workspaceDir: string, gitDir: string }> {
  const workspaceDir = path.join(dir, 'job', 'workspace')
  await mkdir(workspaceDir, { recursive: true })
  return { workspaceDir, gitDir: path.join(dir, 'job', 'git') }
}

describe('executor with hooks and config', () => {
  const savedEnv = { ...process.env }

  beforeEach(() => {
    for (const name of Object.keys(process.env)) {
      if (name.startsWith('GIT_')) {
        delete process.env[name]
      }
    }
  })

  afterEach(() => {
    for (const name of Object.keys(process.env)) {
      if (!(name in savedEnv)) {
        delete process.env[name]
      }
    }
    Object.assign(process.env, savedEnv)
  })

  it('runs no program from them', async () => {
    const dir = await makeTempDir()
    const markers = path.join(dir, 'markers')
    await mkdir(markers)
    const program = async (name: string): Promise<string> => {
      const file = path.join(dir, 'programs', name)
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(file, `#!/bin/sh\ntouch ${path.join(markers, name)}\ncat\n`)
      await chmod(file, 0o755)
      return file
    }

    // The source repository: committed attributes and submodules that name
    // drivers, then hooks and config that start programs, added after the
    // commits so that this setup does not run them.
    const repo = await createRepository(path.join(dir, 'hostile'), {
      'app.txt': 'hello\n',
      '.gitattributes': '* filter=evil diff=evil merge=evil\n',
      '.gitmodules': '[submodule "lib"]\n\tpath = lib\n\turl = ../lib.git\n'
    })
    gitIn(repo, ['update-index', '--add', '--cacheinfo', `160000,${gitIn(repo, ['rev-parse', 'HEAD'])},lib`])
    await commitFiles(repo, {}, 'Add a submodule')
    for (const hook of ['post-checkout', 'pre-commit', 'post-commit', 'commit-msg', 'reference-transaction', 'post-index-change', 'pre-auto-gc', 'post-merge']) {
      await writeFile(path.join(repo, '.git', 'hooks', hook), `#!/bin/sh\ntouch ${path.join(markers, `repo-hook-${hook}`)}\n`)
      await chmod(path.join(repo, '.git', 'hooks', hook), 0o755)
    }
    const evilConfig = [
      `[core]\n\tfsmonitor = ${await program('fsmonitor')}`,
      `[filter "evil"]\n\tsmudge = ${await program('smudge')}\n\tclean = ${await program('clean')}`,
      `[diff "evil"]\n\ttextconv = ${await program('textconv')}`
    ].join('\n')
    await writeFile(path.join(repo, '.git', 'config'), `\n${evilConfig}\n`, { flag: 'a' })

    // The executor's own user and environment carry hostile config too.
    const hooksDir = path.join(dir, 'global-hooks')
    await mkdir(hooksDir)
    for (const hook of ['post-checkout', 'pre-commit', 'post-commit', 'reference-transaction']) {
      await writeFile(path.join(hooksDir, hook), `#!/bin/sh\ntouch ${path.join(markers, `global-hook-${hook}`)}\n`)
      await chmod(path.join(hooksDir, hook), 0o755)
    }
    const globalConfig = path.join(dir, 'global.gitconfig')
    await writeFile(globalConfig, `[core]\n\thooksPath = ${hooksDir}\n${evilConfig}\n`)
    process.env.GIT_CONFIG_GLOBAL = globalConfig
    process.env.GIT_CONFIG_COUNT = '1'
    process.env.GIT_CONFIG_KEY_0 = 'core.hooksPath'
    process.env.GIT_CONFIG_VALUE_0 = hooksDir

    // Control: plain git with this environment does run the programs.
    execFileSync('git', ['-C', repo, 'checkout', '--quiet', '-b', 'control'], { env: process.env, stdio: 'ignore' })
    expect((await readdir(markers)).length).toBeGreaterThan(0)
    await rm(markers, { recursive: true })
    await mkdir(markers)

    const git = await newGit()
    const sent = await createBundle({ git, repoDir: repo, branch: 'main', outFile: path.join(dir, 'base.bundle') })
    const prepared = await prepareWorkspace({ git, bundlePath: sent.bundlePath, ...await jobFolders(dir), docId: 7, stage: 'planned' })
    await writeFile(path.join(prepared.workspaceDir, 'app.txt'), 'changed by the agent\n')
    const result = await commitWorkspace({ git, workspace: prepared, outFile: path.join(dir, 'result.bundle'), message: 'Agent changes' })
    await fetchResult({ git, repoDir: repo, bundlePath: result.bundlePath, docId: 7, stage: 'planned', baseCommit: sent.commit })

    expect(await readdir(markers)).toEqual([])
    expect(await readFile(path.join(prepared.workspaceDir, 'app.txt'), 'utf8')).toBe('changed by the agent\n')
    expect(await readdir(path.join(prepared.workspaceDir, 'lib')).catch(() => [])).toEqual([])
    expect(await readdir(prepared.gitDir)).not.toContain('hooks')
    expect(gitIn(repo, ['show', 'cascade/7/planned:app.txt'])).toBe('changed by the agent')
  })
})

describe('executor bundle limits', () => {
  it('rejects a bundle over the limit', async () => {
    const dir = await makeTempDir()
    const { git, bundlePath } = await bundleOf(dir, { 'data.txt': randomBytes(8192).toString('hex') })
    const folders = await jobFolders(dir)

    const err = await rejection(prepareWorkspace({ git, bundlePath, ...folders, docId: 1, stage: 'idea', limits: { maxBundleBytes: 1024 } }))

    expect(err).toBeInstanceOf(BundleError)
    expect(err.code).toBe('ERR_BUNDLE_TOO_LARGE')
    expect(err.message).toContain('over the limit of 1024 bytes (maxBundleBytes)')
    expect(await readdir(folders.workspaceDir)).toEqual([])
  })

  it('rejects a checkout that expands', async () => {
    const dir = await makeTempDir()
    const { git, bundlePath } = await bundleOf(dir, { 'zeros.bin': '\0'.repeat(32 * 1024 * 1024) })
    const folders = await jobFolders(dir)
    const limits: Partial<GitLimits> = { maxBundleBytes: 1024 * 1024, maxContentBytes: 8 * 1024 * 1024 }

    const err = await rejection(prepareWorkspace({ git, bundlePath, ...folders, docId: 1, stage: 'idea', limits }))

    expect(err.code).toBe('ERR_CHECKOUT_TOO_LARGE')
    expect(err.message).toContain('more than 8388608 bytes (maxContentBytes); nothing was written')
    expect(await readdir(folders.workspaceDir)).toEqual([])
  })

  it('rejects too many files', async () => {
    const dir = await makeTempDir()
    const files = Object.fromEntries(Array.from({ length: 30 }, (_, n) => [`f${n}.txt`, `${n}\n`]))
    const { git, bundlePath } = await bundleOf(dir, files)
    const folders = await jobFolders(dir)

    const err = await rejection(prepareWorkspace({ git, bundlePath, ...folders, docId: 1, stage: 'idea', limits: { maxFiles: 10 } }))

    expect(err.code).toBe('ERR_CHECKOUT_TOO_LARGE')
    expect(err.message).toContain('more than 10 files (maxFiles)')
    expect(await readdir(folders.workspaceDir)).toEqual([])
  })

  it('rejects a file that is no bundle', async () => {
    const dir = await makeTempDir()
    const bundlePath = path.join(dir, 'fake.bundle')
    await writeFile(bundlePath, 'PK\u0003\u0004 not a git bundle')

    const err = await rejection(prepareWorkspace({ git: await newGit(), bundlePath, ...await jobFolders(dir), docId: 1, stage: 'idea' }))

    expect(err.code).toBe('ERR_BUNDLE_INVALID')
    expect(err.message).toContain(`bundle ${bundlePath} was rejected by git bundle`)
  })

  it('rejects a bundle with prerequisites', async () => {
    const dir = await makeTempDir()
    const repo = await createRepository(path.join(dir, 'source'), { 'a.txt': 'a\n' })
    const first = gitIn(repo, ['rev-parse', 'HEAD'])
    await commitFiles(repo, { 'b.txt': 'b\n' }, 'Second')
    const bundlePath = path.join(dir, 'thin.bundle')
    gitIn(repo, ['bundle', 'create', '--quiet', bundlePath, 'main', `^${first}`])

    const err = await rejection(prepareWorkspace({ git: await newGit(), bundlePath, ...await jobFolders(dir), docId: 1, stage: 'idea' }))

    expect(err.code).toBe('ERR_BUNDLE_INVALID')
    expect(err.message).toContain('lacks these prerequisite commits')
  })

  it.each([['.git'], ['.GIT'], ['..']])('rejects a tree entry named %s', async (name) => {
    const dir = await makeTempDir()
    const repo = await createRepository(path.join(dir, 'source'), { 'a.txt': 'a\n' })
    const blob = execFileSync('git', ['-C', repo, 'hash-object', '-w', '--stdin'], { input: 'payload\n', encoding: 'utf8' }).trim()
    const tree = execFileSync('git', ['-C', repo, 'mktree'], { input: `100644 blob ${blob}\t${name}\n`, encoding: 'utf8' }).trim()
    const commit = gitIn(repo, ['commit-tree', '-m', 'hostile tree', tree])
    gitIn(repo, ['update-ref', 'refs/heads/main', commit])
    const bundlePath = path.join(dir, 'hostile.bundle')
    gitIn(repo, ['bundle', 'create', '--quiet', bundlePath, 'main'])
    const folders = await jobFolders(dir)

    const err = await rejection(prepareWorkspace({ git: await newGit(), bundlePath, ...folders, docId: 1, stage: 'idea' }))

    expect(err.code).toBe('ERR_BUNDLE_INVALID')
    expect(err.message).toContain('fail git fsck')
    expect(await readdir(folders.workspaceDir)).toEqual([])
  })

  it('rejects a bundle with two branches', async () => {
    const dir = await makeTempDir()
    const repo = await createRepository(path.join(dir, 'source'), { 'a.txt': 'a\n' })
    gitIn(repo, ['branch', 'other'])
    const bundlePath = path.join(dir, 'two.bundle')
    gitIn(repo, ['bundle', 'create', '--quiet', bundlePath, 'main', 'other'])

    const err = await rejection(prepareWorkspace({ git: await newGit(), bundlePath, ...await jobFolders(dir), docId: 1, stage: 'idea' }))

    expect(err.code).toBe('ERR_BUNDLE_REFS')
    expect(err.message).toContain('has 2 branches')
  })

  it('rejects a git folder inside the workspace', async () => {
    const dir = await makeTempDir()
    const { git, bundlePath } = await bundleOf(dir, { 'a.txt': 'a\n' })
    const { workspaceDir } = await jobFolders(dir)

    const err = await rejection(prepareWorkspace({ git, bundlePath, workspaceDir, gitDir: path.join(workspaceDir, '.repo'), docId: 1, stage: 'idea' }))

    expect(err).toBeInstanceOf(WorkspaceError)
    expect(err.code).toBe('ERR_WORKSPACE_INVALID')
  })

  it('rejects a workspace that is not empty', async () => {
    const dir = await makeTempDir()
    const { git, bundlePath } = await bundleOf(dir, { 'a.txt': 'a\n' })
    const folders = await jobFolders(dir)
    await writeFile(path.join(folders.workspaceDir, 'left-over.txt'), 'x')

    const err = await rejection(prepareWorkspace({ git, bundlePath, ...folders, docId: 1, stage: 'idea' }))

    expect(err.code).toBe('ERR_WORKSPACE_INVALID')
    expect(err.message).toContain('is not empty')
  })

  it('rejects an invalid document id', async () => {
    const dir = await makeTempDir()
    const { git, bundlePath } = await bundleOf(dir, { 'a.txt': 'a\n' })

    const err = await rejection(prepareWorkspace({ git, bundlePath, ...await jobFolders(dir), docId: '../main', stage: 'idea' }))

    expect(err.code).toBe('ERR_WORKSPACE_INVALID')
    expect(err.message).toContain('invalid document id "../main"')
  })
})

describe('executor workspace after the agent', () => {
  async function prepared (dir: string): Promise<{ git: Git, workspace: PreparedWorkspace }> {
    const { git, bundlePath } = await bundleOf(dir, { 'src/app.txt': 'app\n', 'docs/readme.md': 'docs\n' })
    const workspace = await prepareWorkspace({ git, bundlePath, ...await jobFolders(dir), docId: 3, stage: 'planned' })
    return { git, workspace }
  }

  async function expectRejected (dir: string, git: Git, workspace: PreparedWorkspace, limits?: Partial<GitLimits>): Promise<Error & { code: string, path: string }> {
    const outFile = path.join(dir, 'result.bundle')
    const err = await rejection(commitWorkspace({ git, workspace, outFile, message: 'm', limits }))
    expect(err).toBeInstanceOf(WorkspaceError)
    expect(gitIn(dir, [`--git-dir=${workspace.gitDir}`, 'rev-parse', workspace.branch])).toBe(workspace.baseCommit)
    expect(await readdir(dir)).not.toContain('result.bundle')
    return err as Error & { code: string, path: string }
  }

  it.each([
    ['an absolute target', 'passwd', '/etc/passwd'],
    ['a parent target', 'escape', '../../x'],
    ['a nested parent target', 'src/escape', '../../../x'],
    ['a detour out and in', 'detour', '../workspace/src/app.txt']
  ])('rejects a link with %s', async (_, name, target) => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await symlink(target, path.join(workspace.workspaceDir, name))

    const err = await expectRejected(dir, git, workspace)

    expect(err.code).toBe('ERR_WORKSPACE_SYMLINK')
    expect(err.path).toBe(name)
    expect(err.message).toContain(`workspace link ${name} points to ${JSON.stringify(target)}`)
  })

  it('rejects a link through another link', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await symlink('.', path.join(workspace.workspaceDir, 'here'))
    await symlink('here/..', path.join(workspace.workspaceDir, 'parent'))

    const err = await expectRejected(dir, git, workspace)

    expect(err.code).toBe('ERR_WORKSPACE_SYMLINK')
    expect(err.path).toBe('parent')
  })

  it('accepts links inside the workspace', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await symlink('../docs/readme.md', path.join(workspace.workspaceDir, 'src', 'readme.md'))
    await symlink('missing-but-inside.txt', path.join(workspace.workspaceDir, 'dangling'))

    const result = await commitWorkspace({ git, workspace, outFile: path.join(dir, 'result.bundle'), message: 'Links' })

    expect(result.changedFiles.sort()).toEqual(['dangling', 'src/readme.md'])
  })

  it('rejects a hard link', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await writeFile(path.join(dir, 'outside.txt'), 'outside the workspace\n')
    await link(path.join(dir, 'outside.txt'), path.join(workspace.workspaceDir, 'src', 'copy.txt'))

    const err = await expectRejected(dir, git, workspace)

    expect(err.code).toBe('ERR_WORKSPACE_HARDLINK')
    expect(err.path).toBe('src/copy.txt')
  })

  it('rejects a FIFO', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    execFileSync('mkfifo', [path.join(workspace.workspaceDir, 'pipe')])

    const err = await expectRejected(dir, git, workspace)

    expect(err.code).toBe('ERR_WORKSPACE_SPECIAL_FILE')
    expect(err.path).toBe('pipe')
  })

  it('rejects a nested repository', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await mkdir(path.join(workspace.workspaceDir, 'vendor', '.git'), { recursive: true })

    const err = await expectRejected(dir, git, workspace)

    expect(err.code).toBe('ERR_WORKSPACE_GIT_DIR')
    expect(err.path).toBe('vendor/.git')
  })

  it('rejects a workspace over the limit', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    await writeFile(path.join(workspace.workspaceDir, 'big.bin'), Buffer.alloc(4096))

    const err = await expectRejected(dir, git, workspace, { maxContentBytes: 2048 })

    expect(err.code).toBe('ERR_WORKSPACE_TOO_LARGE')
    expect(err.message).toContain('exceed 2048 bytes (maxContentBytes)')
  })

  it('rejects too many workspace entries', async () => {
    const dir = await makeTempDir()
    const { git, workspace } = await prepared(dir)
    for (let n = 0; n < 20; n++) {
      await writeFile(path.join(workspace.workspaceDir, `file-${n}.txt`), 'x')
    }

    const err = await expectRejected(dir, git, workspace, { maxFiles: 10 })

    expect(err.code).toBe('ERR_WORKSPACE_TOO_LARGE')
    expect(err.message).toContain('more than 10 files, links and folders (maxFiles)')
  })
})
