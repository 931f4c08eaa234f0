// Mutation testing (`npm run mutation`; slow, so not part of `npm test`). Mutates the money code:
// the domain's pure functions and the ledger's allocation, arrears and hold movements, and runs the
// unit and ledger-level integration tests against each mutant on the real Postgres test cluster.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  // The full set (domain/**/*.ts, ledger/movement.ts, ledger/limits.ts and the allocation parts of
  // ledger/ledger.ts as well) took over an hour on a loaded 2-core machine; this is the money core.
  // Widen it with --mutate, e.g. `npm run mutation -- --mutate ledger/movement.ts`.
  mutate: ['domain/lots.ts', 'domain/amount.ts', 'domain/rating.ts', 'ledger/holds.ts', 'ledger/arrears.ts'],
  testRunner: 'jest',
  jest: {
    configFile: 'jest.config.js',
    config: {
      // Stryker runs Jest once per mutant: a setup without the build, bundle and Temporal server.
      globalSetup: '<rootDir>/test/support/mutation-setup.ts',
      // Jest finds the tests related to a mutated file through the import graph of the files under
      // `roots`; with test/ alone it misses every test that reaches domain/ through ledger/ or api/.
      roots: ['<rootDir>'],
      // No workflow, API-contract or process tests: they are slow and reach this code through the
      // ledger tests' paths anyway.
      testMatch: [
        '<rootDir>/test/unit/**/*.test.ts',
        '<rootDir>/test/integration/consumption-order.test.ts',
        '<rootDir>/test/integration/holds-ledger.test.ts',
        '<rootDir>/test/integration/ledger.test.ts',
        '<rootDir>/test/integration/lifecycle-props.test.ts',
        '<rootDir>/test/integration/metering.test.ts',
        '<rootDir>/test/integration/metering-isolation.test.ts',
        '<rootDir>/test/integration/*mutants*.test.ts',
      ],
    },
  },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  coverageAnalysis: 'perTest',
  concurrency: 2,
  // A loaded 2-core machine: a mutant is a timeout only well past its normal time.
  timeoutMS: 30000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 15,
  // Never copy the live Postgres cluster, the build or the tool downloads into the sandbox.
  ignorePatterns: ['.data', 'dist', '.tools', 'coverage'],
  reporters: ['clear-text', 'progress-append-only', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 85, low: 70, break: null },
};
