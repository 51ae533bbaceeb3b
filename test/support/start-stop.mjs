// Starts a node on loopback, stops it, and returns without calling
// process.exit: the process ends only if the node left no handle open.
// Runs against the build in dist/, which `npm test` makes first.
import '../../dist/node/polyfills.js'
import { loadConfig } from '../../dist/node/config.js'
import { silentLogger } from '../../dist/node/logger.js'
import { EmdxNode } from '../../dist/node/node.js'

const dataDir = process.argv[2]
const config = await loadConfig(dataDir, { port: 0, apiPort: 0, listenHost: '127.0.0.1', mdns: false })
const node = await EmdxNode.start({ config, logger: silentLogger() })
await fetch(`${node.api.url}/api/v1/status`)
await node.stop()
process.stdout.write('stopped\n')
