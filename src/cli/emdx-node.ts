import '../node/polyfills.js'
import { Command } from 'commander'
import { VERSION } from '../node/version.js'
import { runProgram } from './run-program.js'
import { registerCapacityCommand } from './commands/capacity.js'
import { registerCreditsCommands } from './commands/credits.js'
import { registerDevnetCommand } from './commands/devnet.js'
import { registerRunCommand } from './commands/run.js'
import { registerStartCommand } from './commands/start.js'
import { registerStatusCommands } from './commands/status.js'

const program = new Command('emdx-node')
  .description('a node of the emdx peer-to-peer compute network for EMDX cascades')
  .version(VERSION)
  .showHelpAfterError()

registerStartCommand(program)
registerStatusCommands(program)
registerCapacityCommand(program)
registerCreditsCommands(program)
registerRunCommand(program)
registerDevnetCommand(program)

await runProgram(program)
