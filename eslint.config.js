import neostandard, { plugins, resolveIgnoresFromGitignore } from 'neostandard'

const tseslint = plugins['typescript-eslint']

export default [
  ...neostandard({
    ts: true,
    ignores: resolveIgnoresFromGitignore()
  }),
  {
    // An unawaited promise in a socket server is a rejection nobody handles
    // and an ordering nobody chose; the rule needs type information, so it
    // runs on the daemon's sources, each file against the nearest tsconfig.
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error'
    }
  },
  {
    // `void promise` as a statement is how no-floating-promises is told a
    // promise is left running on purpose (its errors handled inside); in an
    // expression `void` still hides a value, so it stays an error there.
    rules: {
      'no-void': ['error', { allowAsStatement: true }]
    }
  }
]
