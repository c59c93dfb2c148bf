import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // tests spawn real brokers and clients; 2 cores on CI machines
    maxWorkers: 4,
    reporters: ['default']
  }
})
