// One live query on the cache: the latest result of an operation, updated when the cache
// changes (a like, a subscription) until stopped.

import type { AnyVariables, Client, OperationResult, TypedDocumentNode } from '@urql/core';
import { toProblem, type Problem } from '../api/errors';

export class Live<Data, Vars extends AnyVariables> {
  result = $state.raw<OperationResult<Data, Vars> | null>(null);
  private sub: { unsubscribe(): void } | null = null;
  private key: string | null = null;

  constructor(private readonly query: TypedDocumentNode<Data, Vars>) {}

  /**
   * (Re)starts the query with these variables; the previous one stops. Run again with the
   * same variables (the viewer signed in), the page keeps showing the last result until the
   * new one arrives, so nothing on it is torn down.
   */
  run(client: Client, variables: Vars): void {
    this.stop();
    const key = JSON.stringify(variables);
    const same = key === this.key;
    this.key = key;
    if (!same) this.result = null;
    this.sub = client
      .query(this.query, variables, { requestPolicy: same ? 'network-only' : 'cache-and-network' })
      .subscribe((r) => {
        if (same && !r.data && !r.error) return;
        this.result = r;
      });
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }

  get data(): Data | null {
    return this.result?.data ?? null;
  }

  get fetching(): boolean {
    return this.result === null;
  }

  get problem(): Problem | null {
    return this.result?.error ? toProblem(this.result.error) : null;
  }
}
