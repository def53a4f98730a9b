import { defineConfig } from 'vitest/config';

// Tests that build network namespaces share the machine's network stack and
// kernel modules, so files run one at a time; tests inside a file are ordered.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
