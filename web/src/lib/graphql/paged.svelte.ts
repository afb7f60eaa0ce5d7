// A Relay connection read page by page (infinite scroll). Each page is its own live query on
// the cache, so a like, an edit or an invalidation (a new comment) refreshes exactly the pages
// that show it, and pages already loaded never collapse into one when a cursor page is
// refetched (urql's "infinite scrolling" pattern without a merging resolver).

import type { AnyVariables, Client, OperationResult, RequestPolicy, TypedDocumentNode } from '@urql/core';
import { toProblem, type Problem } from '../api/errors';

export interface Connection<Node> {
  nodes: Node[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

interface PageState<Data> {
  after: string | null;
  result: OperationResult<Data> | null;
}

export class Paged<Data, Vars extends AnyVariables, Node extends { id: string }> {
  // Raw: results are replaced whole, never mutated (no deep proxies over urql's objects).
  pages = $state.raw<PageState<Data>[]>([]);
  private subs: { unsubscribe(): void }[] = [];

  constructor(
    private readonly client: Client,
    private readonly query: TypedDocumentNode<Data, Vars>,
    private readonly variables: (after: string | null) => Vars,
    private readonly pick: (data: Data) => Connection<Node> | null | undefined,
  ) {}

  /** Loads the first page (again). */
  start(): void {
    this.dispose();
    this.pages = [];
    this.load(null);
  }

  /** Loads the next page when there is one and nothing is loading. */
  more(): void {
    if (!this.hasMore || this.fetching) return;
    const last = this.pages[this.pages.length - 1];
    const conn = last?.result?.data ? this.pick(last.result.data) : null;
    if (conn?.pageInfo.endCursor) this.load(conn.pageInfo.endCursor);
  }

  /** Every loaded node, in order, each once. */
  get nodes(): Node[] {
    const seen = new Set<string>();
    const out: Node[] = [];
    for (const page of this.pages) {
      const conn = page.result?.data ? this.pick(page.result.data) : null;
      for (const node of conn?.nodes ?? []) {
        if (!seen.has(node.id)) {
          seen.add(node.id);
          out.push(node);
        }
      }
    }
    return out;
  }

  /** Whether the first page answered with no connection at all (e.g. user not found). */
  get missing(): boolean {
    const first = this.pages[0]?.result;
    return !!first?.data && !first.error && !this.pick(first.data);
  }

  /** True until the first page has answered, and while any page is loading. */
  get fetching(): boolean {
    return this.pages.length === 0 || this.pages.some((p) => p.result === null || (p.result.stale && !p.result.data));
  }

  get loaded(): boolean {
    return this.pages.length > 0 && this.pages[0]!.result !== null;
  }

  get hasMore(): boolean {
    const last = this.pages[this.pages.length - 1]?.result;
    const conn = last?.data ? this.pick(last.data) : null;
    return !!conn?.pageInfo.hasNextPage;
  }

  get problem(): Problem | null {
    for (const page of this.pages) {
      if (page.result?.error) return toProblem(page.result.error);
    }
    return null;
  }

  /** The first page's data (e.g. the channel a list of videos belongs to). */
  get first(): Data | null {
    return this.pages[0]?.result?.data ?? null;
  }

  /**
   * Asks the server for every loaded page again (after a failure, or when the viewer
   * changed), keeping what is shown until each answer arrives.
   */
  retry(): void {
    this.dispose();
    this.pages.forEach((page, index) => this.subscribe(index, page.after, 'network-only'));
  }

  dispose(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  private load(after: string | null): void {
    const index = this.pages.length;
    this.pages = [...this.pages, { after, result: null }];
    this.subscribe(index, after, 'cache-and-network');
  }

  private subscribe(index: number, after: string | null, requestPolicy: RequestPolicy): void {
    const sub = this.client.query(this.query, this.variables(after), { requestPolicy }).subscribe((result) => {
      if (!this.pages[index]) return;
      this.pages = this.pages.map((p, i) => (i === index ? { ...p, result: result as OperationResult<Data> } : p));
    });
    this.subs.push(sub);
  }
}
