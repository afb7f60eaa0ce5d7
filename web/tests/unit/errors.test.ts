import { describe, expect, it } from 'vitest';
import { CombinedError } from '@urql/core';
import {
  ApiError,
  camelField,
  fromCombinedError,
  fromGraphQLErrors,
  fromRest,
  fromTus,
  isAuthError,
  messageFor,
  normaliseCode,
  toProblem,
} from '../../src/lib/api/errors';

function response(status: number, headers: Record<string, string> = {}): Response {
  return new Response(null, { status, headers });
}

describe('GraphQL errors', () => {
  it('reads extensions.code, per-field problems and retryAfterSeconds', () => {
    const p = fromGraphQLErrors([
      {
        message: 'invalid video',
        extensions: { code: 'BAD_USER_INPUT', fields: { title: 'must be 1 to 100 characters' } },
      },
    ]);
    expect(p.code).toBe('BAD_USER_INPUT');
    expect(p.fields).toEqual({ title: 'must be 1 to 100 characters' });
    expect(p.message).toBe('Please check what you entered.');
    expect(p.serverMessage).toBe('invalid video');
  });

  it('maps each Flick code to its own readable message', () => {
    const codes = ['UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'UNAVAILABLE', 'INTERNAL', 'QUERY_TOO_COMPLEX'] as const;
    const messages = codes.map((c) => fromGraphQLErrors([{ message: 'x', extensions: { code: c } }]).message);
    expect(new Set(messages).size).toBe(codes.length);
    expect(messages[0]).toMatch(/sign in/i);
    expect(messages[2]).toMatch(/not found/i);
    expect(messages[4]).toMatch(/temporarily unavailable/i);
  });

  it('shows the server words where they name the problem (conflict, forbidden, limits)', () => {
    const p = fromGraphQLErrors([
      { message: 'too many unfinished uploads: 10 are open and at most 10 are allowed', extensions: { code: 'FORBIDDEN' } },
    ]);
    expect(p.message).toBe('Too many unfinished uploads: 10 are open and at most 10 are allowed.');
  });

  it('keeps a generic message for codes whose server text is not for people', () => {
    const p = fromGraphQLErrors([{ message: 'internal error', extensions: { code: 'INTERNAL' } }]);
    expect(p.message).toBe(messageFor('INTERNAL'));
  });

  it('says when to retry a rate-limited request', () => {
    const p = fromGraphQLErrors([{ message: 'too many requests', extensions: { code: 'RATE_LIMITED', retryAfterSeconds: 7 } }]);
    expect(p.retryAfterSeconds).toBe(7);
    expect(p.message).toBe('Too many requests. Try again in 7 s.');
  });

  it("normalises the router's own codes", () => {
    expect(normaliseCode('SUBREQUEST_HTTP_ERROR')).toBe('UNAVAILABLE');
    expect(normaliseCode('GRAPHQL_VALIDATION_FAILED')).toBe('BAD_USER_INPUT');
    expect(normaliseCode('INVALID_ARGUMENT')).toBe('BAD_USER_INPUT');
    expect(normaliseCode('SOMETHING_NEW')).toBe('UNKNOWN');
    expect(normaliseCode(undefined, 503)).toBe('UNAVAILABLE');
  });

  it('reads an HTTP 401 from the edge (ForwardAuth refused a token) as UNAUTHENTICATED', () => {
    const err = new CombinedError({ networkError: new Error('Unauthorized'), response: response(401) });
    expect(fromCombinedError(err).code).toBe('UNAUTHENTICATED');
    expect(isAuthError(err)).toBe(true);
  });

  it("reads Traefik's plain-text 429 with Retry-After", () => {
    const err = new CombinedError({
      networkError: new Error('Too Many Requests'),
      response: response(429, { 'retry-after': '3' }),
    });
    const p = fromCombinedError(err);
    expect(p.code).toBe('RATE_LIMITED');
    expect(p.retryAfterSeconds).toBe(3);
  });

  it('reads a failed fetch as a network problem', () => {
    const err = new CombinedError({ networkError: new TypeError('Failed to fetch') });
    expect(fromCombinedError(err).code).toBe('NETWORK');
    expect(isAuthError(err)).toBe(false);
  });

  it('treats an UNAUTHENTICATED GraphQL error as an auth error, FORBIDDEN not', () => {
    const unauth = new CombinedError({ graphQLErrors: [{ message: 'sign in', extensions: { code: 'UNAUTHENTICATED' } }] });
    const forbidden = new CombinedError({ graphQLErrors: [{ message: 'no', extensions: { code: 'FORBIDDEN' } }] });
    expect(isAuthError(unauth)).toBe(true);
    expect(isAuthError(forbidden)).toBe(false);
  });
});

describe('REST errors', () => {
  it('reads {"error": {code, message, fields}} with snake_case fields made camelCase', () => {
    const p = fromRest(
      400,
      JSON.stringify({ error: { code: 'BAD_USER_INPUT', message: 'invalid registration', fields: { display_name: 'must be 1 to 50 characters' } } }),
    );
    expect(p.code).toBe('BAD_USER_INPUT');
    expect(p.fields).toEqual({ displayName: 'must be 1 to 50 characters' });
  });

  it('shows a conflict in the server words', () => {
    const p = fromRest(409, JSON.stringify({ error: { code: 'CONFLICT', message: 'the username is taken' } }));
    expect(p.message).toBe('The username is taken.');
  });

  it('falls back to the status for a body that is not JSON', () => {
    expect(fromRest(502, 'Bad Gateway').code).toBe('UNAVAILABLE');
    expect(fromRest(429, 'Too Many Requests', '2').retryAfterSeconds).toBe(2);
    expect(fromRest(460, '').code).toBe('CHECKSUM_MISMATCH');
  });

  it('camelCases field names', () => {
    expect(camelField('current_password')).toBe('currentPassword');
    expect(camelField('title')).toBe('title');
  });
});

describe('tus and other errors', () => {
  it("reads the transcoder's JSON answer to a tus request", () => {
    const err = {
      message: 'tus: unexpected response while creating upload',
      originalRequest: {},
      originalResponse: {
        getStatus: () => 413,
        getBody: () => JSON.stringify({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'the file is 20 bytes; the largest upload accepted is 10 bytes' } }),
        getHeader: () => null,
      },
    };
    const p = fromTus(err);
    expect(p.code).toBe('PAYLOAD_TOO_LARGE');
    expect(p.message).toMatch(/largest upload accepted/);
    expect(toProblem(err).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('reads a tus request without an answer as a network problem', () => {
    expect(fromTus({ message: 'tus: failed to upload chunk', originalResponse: null }).code).toBe('NETWORK');
  });

  it('reads a WebSocket close 4403 (token expired or revoked) as UNAUTHENTICATED', () => {
    expect(toProblem({ code: 4403, reason: 'Forbidden', wasClean: true }).code).toBe('UNAUTHENTICATED');
    expect(toProblem({ code: 1006, reason: '', wasClean: false }).code).toBe('NETWORK');
  });

  it('unwraps ApiError and graphql-ws error arrays', () => {
    const p = fromRest(404, JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no such video' } }));
    expect(toProblem(new ApiError(p))).toBe(p);
    expect(toProblem([{ message: 'only the owner', extensions: { code: 'FORBIDDEN' } }]).code).toBe('FORBIDDEN');
  });
});

describe('problems with fields', () => {
  it('a refusal about one field keeps the server words (wrong current password)', () => {
    const p = fromRest(403, JSON.stringify({ error: { code: 'FORBIDDEN', message: 'current password is wrong', fields: { current_password: 'is wrong' } } }));
    expect(p.message).toBe('Current password is wrong.');
    expect(p.fields).toEqual({ currentPassword: 'is wrong' });
  });
});
