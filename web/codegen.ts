// GraphQL Code Generator: typed documents for every operation in src/, checked against the
// supergraph the router serves. `npm run build` runs this first, so an operation that no
// longer matches ../supergraph/supergraph.graphql fails the build (and svelte-check then
// fails on any use of a field whose type changed).
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../supergraph/supergraph.graphql',
  documents: ['src/**/*.ts', '!src/lib/gql/**'],
  ignoreNoDocuments: false,
  errorsOnly: true,
  generates: {
    'src/lib/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        scalars: { DateTime: 'string', join__FieldSet: 'string', link__Import: 'unknown' },
        avoidOptionals: { field: true, inputValue: false, object: true, defaultValue: false },
      },
    },
  },
};

export default config;
