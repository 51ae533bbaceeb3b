import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./src/node/polyfills.ts'],
    // Tests start real libp2p nodes, containers and browsers; a few seconds
    // per test is normal on a two-core machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default']
  }
})
