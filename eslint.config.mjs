import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.tools/**',
      '.data/**',
      'coverage/**',
      'reports/**',
      '.stryker-tmp/**',
      '*.config.js',
      '*.config.mjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Amounts are bigint; forbid the float parse functions that would silently lose precision.
      'no-restricted-globals': ['error', { name: 'parseFloat', message: 'amounts are bigint micro-credits' }],
    },
  },
  {
    // Workflows are deterministic and bundled: no Node builtins, no pg/express, no SQL layer, activities by type only.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'path', 'crypto', 'http', 'child_process'], message: 'no Node I/O in workflows' },
            { group: ['pg', 'express', '../db/*', '../api/*'], message: 'no I/O layers in workflows' },
            { group: ['../ledger/*'], allowTypeImports: true, message: 'ledger types only in workflows' },
            {
              group: ['../activities', '../activities/*'],
              allowTypeImports: true,
              message: 'import activities by type only',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // Response bodies in tests are untyped JSON by nature.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
