import { chmod, readdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cascadeBranch } from '../../src/git/branch.js'
import { GitError } from '../../src/git/errors.js'
import { Git } from '../../src/git/git.js'
import { newGit } from '../support/git-repo.js'
import { makeTempDir } from '../support/temp.js'

const savedEnv = { ...process.env }

afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (!(name in savedEnv)) {
      delete process.env[name]
    }
  }
  Object.assign(process.env, savedEnv)
})

/** Writes a stand-in for the git executable that sleeps, for timeout and cancellation tests. */
async function sleepingGit (dir: string): Promise<string> {
  const file = path.join(dir, 'slow-git')
  await writeFile(file, '#!/bin/sh\nsleep 30\n')
  await chmod(file, 0o755)
  return file
}

describe('Git runner', () => {
  it('reads no config but its own', async () => {
    const dir = await makeTempDir()
    const hostile = path.join(dir, 'gitconfig')
    await writeFile(hostile, '[core]\n\thooksPath = /tmp/hooks\n[user]\n\tname = Someone Else\n')
    process.env.GIT_CONFIG_GLOBAL = hostile
    process.env.GIT_CONFIG_COUNT = '1'
    process.env.GIT_CONFIG_KEY_0 = 'alias.st'
    process.env.GIT_CONFIG_VALUE_0 = '!touch pwned'
    process.env.GIT_DIR = dir

    const { stdout } = await (await newGit()).run(['config', '--list', '--show-scope'])

    const scopes = new Set(stdout.trim().split('\n').map((line) => line.split('\t')[0]))
    expect([...scopes]).toEqual(['command'])
    expect(stdout).toContain('core.hookspath=/dev/null')
    expect(stdout).not.toContain('Someone Else')
    expect(stdout).not.toContain('alias.st')
  })

  it('passes arguments without a shell', async () => {
    const dir = await makeTempDir()
    const name = 'repo; touch pwned $(touch pwned2)'

    await (await newGit()).run(['init', '--quiet', '--bare', '--template=', path.join(dir, name)])

    expect((await readdir(dir)).sort()).toEqual([name])
  })

  it('reports exit code and stderr', async () => {
    const dir = await makeTempDir()

    const err = await (await newGit()).run([`--git-dir=${dir}`, 'rev-parse', 'HEAD']).catch((caught: unknown) => caught)

    expect(err).toBeInstanceOf(GitError)
    expect((err as GitError).code).toBe('ERR_GIT_FAILED')
    expect((err as GitError).command).toBe('rev-parse')
    expect((err as GitError).exitCode).toBe(128)
    expect((err as GitError).message).toContain('not a git repository')
  })

  it('stops a command at the timeout', async () => {
    const git = await newGit({ gitPath: await sleepingGit(await makeTempDir()) })
    const started = Date.now()

    const err = await git.run(['fetch'], { timeoutMs: 200 }).catch((caught: unknown) => caught)

    expect((err as GitError).code).toBe('ERR_GIT_TIMEOUT')
    expect((err as GitError).message).toBe('git fetch timed out after 200 ms and was stopped; raise the git timeout or use a smaller repository')
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('stops a command on abort', async () => {
    const git = await newGit({ gitPath: await sleepingGit(await makeTempDir()) })
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const started = Date.now()

    const err = await git.run(['fetch'], { signal: controller.signal }).catch((caught: unknown) => caught)

    expect((err as Error).name).toBe('AbortError')
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('rejects an aborted signal at once', async () => {
    const git = await newGit()

    await expect(git.run(['--version'], { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i)
  })

  it('caps the output', async () => {
    const err = await (await newGit()).run(['--version'], { maxOutputBytes: 4 }).catch((caught: unknown) => caught)

    expect((err as GitError).code).toBe('ERR_GIT_OUTPUT_LIMIT')
  })

  it('names a missing executable', async () => {
    const err = await (await newGit({ gitPath: '/nonexistent/git' })).run(['--version']).catch((caught: unknown) => caught)

    expect((err as GitError).message).toContain('cannot start /nonexistent/git')
  })

  it('removes its home folder', async () => {
    const git = await Git.create()

    await git.dispose()

    await expect(readdir(git.homeDir)).rejects.toThrow(/ENOENT/)
  })
})

describe('cascadeBranch', () => {
  it('formats the branch name', () => {
    expect(cascadeBranch(12, 'planned')).toBe('cascade/12/planned')
    expect(cascadeBranch('a1b2', 'idea')).toBe('cascade/a1b2/idea')
  })

  it('rejects unsafe document ids', () => {
    for (const id of [0, -1, 1.5, '', '../x', 'a/b', '-x', 'a b']) {
      expect(() => cascadeBranch(id, 'idea')).toThrow(/invalid document id/)
    }
  })
})
