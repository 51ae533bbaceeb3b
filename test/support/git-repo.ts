import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach } from 'vitest'
import { Git } from '../../src/git/git.js'
import type { GitOptions } from '../../src/git/git.js'

const runners: Git[] = []

/** Creates the git runner under test; its home folder is removed after the test. */
export async function newGit (options: Omit<GitOptions, 'homeDir'> = {}): Promise<Git> {
  const git = await Git.create(options)
  runners.push(git)
  return git
}

afterEach(async () => {
  for (const git of runners.splice(0)) {
    await git.dispose()
  }
})

/**
 * Returns the environment of the tests' own git calls: no user or system
 * config and a fixed identity, whatever the test process's environment is.
 */
function testGitEnvironment (): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: '/nonexistent',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Test User',
    GIT_AUTHOR_EMAIL: 'user@example.invalid',
    GIT_COMMITTER_NAME: 'Test User',
    GIT_COMMITTER_EMAIL: 'user@example.invalid',
    LC_ALL: 'C'
  }
}

/** Runs git for test setup and inspection and returns its trimmed standard output. */
export function gitIn (cwd: string, args: string[]): string {
  return execFileSync('git', args, { cwd, env: testGitEnvironment(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
}

/** Creates a repository on branch main with the given files committed, and returns its path. */
export async function createRepository (dir: string, files: Record<string, string>, message = 'Initial commit'): Promise<string> {
  await mkdir(dir, { recursive: true })
  gitIn(dir, ['init', '--quiet', '--initial-branch=main'])
  await commitFiles(dir, files, message)
  return dir
}

/** Writes the files into the repository's working tree and commits them. */
export async function commitFiles (repo: string, files: Record<string, string>, message: string): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(repo, name)), { recursive: true })
    await writeFile(path.join(repo, name), content)
  }
  gitIn(repo, ['add', '--all'])
  gitIn(repo, ['commit', '--quiet', '--allow-empty', '--message', message])
  return gitIn(repo, ['rev-parse', 'HEAD'])
}
