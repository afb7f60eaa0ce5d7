// Subscription.videoProgress over graphql-ws: the owner's live view of the transcode. The
// server sends the current state first, then progress at least once a second, and is meant
// to complete the stream at `ready` or `failed`.

import { stringifyDocument } from '@urql/core';
import type { Client as WsClient } from 'graphql-ws';
import { VideoProgressSubscription } from '../graphql/operations';
import type { VideoProgressSubscription as ProgressData } from '../gql/graphql';
import { fromGraphQLErrors, toProblem } from '../api/errors';
import type { UploadEvent } from './state';

const QUERY = stringifyDocument(VideoProgressSubscription);

export interface ProgressWatch {
  /** Stops listening (the app's side of the end; reported as streamEnded by 'client'). */
  close(): void;
}

export function watchProgress(ws: WsClient, videoId: string, emit: (e: UploadEvent) => void): ProgressWatch {
  let ended = false;
  const unsubscribe = ws.subscribe<ProgressData>(
    { query: QUERY, variables: { videoId } },
    {
      next(result) {
        if (result.errors?.length) {
          emit({ type: 'streamFailed', problem: fromGraphQLErrors(result.errors) });
          return;
        }
        const p = result.data?.videoProgress;
        if (p) {
          emit({
            type: 'stage',
            stage: p.stage,
            percent: p.percent,
            rendition: p.rendition,
            etaSeconds: p.etaSeconds,
            error: p.error,
          });
        }
      },
      error(err) {
        if (ended) return;
        ended = true;
        emit({ type: 'streamFailed', problem: toProblem(err) });
      },
      complete() {
        if (ended) return;
        ended = true;
        emit({ type: 'streamEnded', by: 'server' });
      },
    },
  );
  return {
    close() {
      if (ended) return;
      ended = true;
      unsubscribe();
      emit({ type: 'streamEnded', by: 'client' });
    },
  };
}
