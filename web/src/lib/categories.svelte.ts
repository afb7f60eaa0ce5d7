// The categories a video may be in, as media lists them (Query.categories): asked once per
// page load, shared by the upload form and the studio's editor.

import type { Client } from '@urql/core';
import { CategoriesQuery } from './graphql/operations';
import { toProblem, type Problem } from './api/errors';

class Categories {
  list = $state<readonly string[]>([]);
  problem = $state<Problem | null>(null);
  #asked = false;

  /** Asks media once (again after a failure). */
  load(client: Client): void {
    if (this.#asked) return;
    this.#asked = true;
    client
      .query(CategoriesQuery, {})
      .toPromise()
      .then((result) => {
        if (result.data) {
          this.list = result.data.categories;
          this.problem = null;
        } else {
          this.problem = toProblem(result.error);
          this.#asked = false;
        }
      });
  }
}

export const categories = new Categories();
