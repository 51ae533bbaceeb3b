import '../node/polyfills.js'
import { Command, CommanderError } from 'commander'
import { EmdxError } from '../node/errors.js'
import { VERSION } from '../node/version.js'
import { registerCascadeCommands } from './commands/cascade.js'
import { handOver, implemented } from './python-emdx.js'

/**
 * `emdx`: the cascade commands of EMDX, run through the local emdx-node.
 * Any other command goes to the Python `emdx` found later on PATH, so both
 * tools can be installed side by side.
 */
const args = process.argv.slice(2)
if (!implemented(args)) {
  process.exit(await handOver(args))
}

const program = new Command('emdx')
  .description('EMDX cascades on the emdx peer-to-peer network; other emdx commands go to the Python emdx on PATH')
  .version(VERSION)
  .showHelpAfterError()
registerCascadeCommands(program)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode)
  }
  if (err instanceof EmdxError) {
    process.stderr.write(`emdx: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}
