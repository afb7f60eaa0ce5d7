// Monaco's workers for GraphiQL, as graphiql/setup-workers/vite sets them up, but imported from
// here: Vite's dependency optimizer (npm run dev) cannot follow `?worker` imports inside
// node_modules, while it leaves the app's own to Vite's worker plugin (dev and build alike).
import EditorWorker from 'monaco-editor/esm/vs/editor/editor.worker.js?worker';
import JsonWorker from 'monaco-editor/esm/vs/language/json/json.worker.js?worker';
import GraphQLWorker from 'monaco-graphql/esm/graphql.worker.js?worker';
import type { Environment } from 'monaco-editor';

const environment: Environment = {
  getWorker(_workerId, label) {
    if (label === 'json') return new JsonWorker();
    if (label === 'graphql') return new GraphQLWorker();
    return new EditorWorker();
  },
};
(globalThis as typeof globalThis & { MonacoEnvironment: Environment }).MonacoEnvironment = environment;
