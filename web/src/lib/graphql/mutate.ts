// Runs a mutation and returns its data or the problem to show. An UNAUTHENTICATED answer
// (after the auth exchange's one refresh) opens the sign-in prompt over the page, so what the
// user typed stays where it is and the action can be sent again once signed in.

import type { AnyVariables, TypedDocumentNode } from '@urql/core';
import { app } from '../app.svelte';
import { toProblem, type Problem } from '../api/errors';

export type Outcome<Data> = { data: Data; problem: null } | { data: null; problem: Problem };

export async function mutate<Data, Vars extends AnyVariables>(
  document: TypedDocumentNode<Data, Vars>,
  variables: Vars,
  signInReason = 'Sign in to continue.',
): Promise<Outcome<Data>> {
  const result = await app.flick.client.mutation(document, variables).toPromise();
  if (result.error || !result.data) {
    const problem = result.error ? toProblem(result.error) : toProblem(null);
    if (problem.code === 'UNAUTHENTICATED' && app.status !== 'expired') app.requireSignIn(signInReason);
    return { data: null, problem };
  }
  return { data: result.data, problem: null };
}

/** Opens the sign-in prompt instead of sending what needs a user; true when signed in. */
export function ensureSignedIn(reason: string): boolean {
  if (app.status === 'signed-in') return true;
  app.requireSignIn(reason);
  return false;
}
