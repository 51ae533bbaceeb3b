import '../node/polyfills.js'
import { Command, CommanderError } from 'commander'
import { ConfigError, EmdxError } from '../node/errors.js'
import { VERSION } from '../node/version.js'
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

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode)
  }
  if (err instanceof EmdxError) {
    process.stderr.write(`emdx-node: ${err.message}\n`)
    // Exit code 2 for a setting the user must change, 1 for everything else.
    process.exit(err instanceof ConfigError ? 2 : 1)
  }
  throw err
}
