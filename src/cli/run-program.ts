import { CommanderError } from 'commander'
import { ConfigError, EmdxError } from '../node/errors.js'
import type { Command } from 'commander'

/**
 * Parses the command line and runs the chosen command. An EmdxError is
 * printed as one line prefixed with the program's name, with exit code 2
 * for a setting the user must change and 1 for everything else; other
 * errors propagate with their stack, because they are bugs.
 */
export async function runProgram (program: Command): Promise<void> {
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode)
    }
    if (err instanceof EmdxError) {
      process.stderr.write(`${program.name()}: ${err.message}\n`)
      process.exit(err instanceof ConfigError ? 2 : 1)
    }
    throw err
  }
}
