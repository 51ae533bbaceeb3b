import '../node/polyfills.js'
import { Command } from 'commander'
import { VERSION } from '../node/version.js'
import { runProgram } from './run-program.js'
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

await runProgram(program)
