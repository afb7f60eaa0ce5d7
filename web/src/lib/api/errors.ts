// Errors from every transport the app uses (GraphQL over HTTP and WebSocket, REST, tus),
// turned into one shape with a message a person can act on.
//
// Codes are Flick's (ARCHITECTURE.md "Errors"; crates/kit/src/error.rs): the api.md ones
// (UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, BAD_USER_INPUT, CONFLICT, RATE_LIMITED, INTERNAL)
// plus PAYLOAD_TOO_LARGE, METHOD_NOT_ALLOWED, UNAVAILABLE, GONE, UNSUPPORTED_MEDIA_TYPE,
// PRECONDITION_FAILED, CHECKSUM_MISMATCH, QUERY_TOO_COMPLEX, QUERY_TOO_DEEP, and the router's
// own (GRAPHQL_PARSE_FAILED, validation rule names, SUBREQUEST_HTTP_ERROR). Statuses the edge
// answers itself (Traefik's 429, a 502 while a service restarts) carry no code: the status
// decides. NETWORK means no answer came at all.

export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'BAD_USER_INPUT'
  | 'CONFLICT'
  | 'RATE_LIMITED'
  | 'PAYLOAD_TOO_LARGE'
  | 'METHOD_NOT_ALLOWED'
  | 'UNAVAILABLE'
  | 'GONE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PRECONDITION_FAILED'
  | 'CHECKSUM_MISMATCH'
  | 'QUERY_TOO_COMPLEX'
  | 'QUERY_TOO_DEEP'
  | 'INTERNAL'
  | 'NETWORK'
  | 'UNKNOWN';

/** One error, ready to show. */
export interface Problem {
  code: ErrorCode;
  /** What to tell the user (the code's meaning, with the server's words where they help). */
  message: string;
  /** The server's own message, when it sent one. */
  serverMessage?: string;
  /** Per-field problems (camelCase field names), e.g. `{ title: 'must be 1 to 100 characters' }`. */
  fields: Record<string, string>;
  retryAfterSeconds?: number;
  status?: number;
}

const KNOWN: ReadonlySet<string> = new Set<ErrorCode>([
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'CONFLICT',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
  'METHOD_NOT_ALLOWED',
  'UNAVAILABLE',
  'GONE',
  'UNSUPPORTED_MEDIA_TYPE',
  'PRECONDITION_FAILED',
  'CHECKSUM_MISMATCH',
  'QUERY_TOO_COMPLEX',
  'QUERY_TOO_DEEP',
  'INTERNAL',
]);

/** Codes whose server message is written for the person (validation, conflicts, limits). */
const SERVER_MESSAGE_HELPS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'BAD_USER_INPUT',
  'CONFLICT',
  'FORBIDDEN',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'GONE',
]);

/** Normalises a code from any source (router codes and validation rules included). */
export function normaliseCode(code: unknown, status?: number): ErrorCode {
  if (typeof code === 'string') {
    const upper = code.toUpperCase();
    if (KNOWN.has(upper)) return upper as ErrorCode;
    if (upper === 'INVALID_ARGUMENT' || upper === 'GRAPHQL_VALIDATION_FAILED' || upper === 'GRAPHQL_PARSE_FAILED')
      return 'BAD_USER_INPUT';
    if (upper === 'SUBREQUEST_HTTP_ERROR' || upper === 'SUBGRAPH_REQUEST_FAILURE') return 'UNAVAILABLE';
    if (upper === 'TOO_MANY_REQUESTS') return 'RATE_LIMITED';
  }
  return status === undefined ? 'UNKNOWN' : codeForStatus(status);
}

export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 0:
      return 'NETWORK';
    case 400:
      return 'BAD_USER_INPUT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 409:
      return 'CONFLICT';
    case 410:
      return 'GONE';
    case 412:
      return 'PRECONDITION_FAILED';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'RATE_LIMITED';
    case 460:
      return 'CHECKSUM_MISMATCH';
    case 502:
    case 503:
    case 504:
      return 'UNAVAILABLE';
    default:
      return status >= 500 ? 'INTERNAL' : 'UNKNOWN';
  }
}

/** The readable sentence for a code. */
export function messageFor(code: ErrorCode, retryAfterSeconds?: number): string {
  switch (code) {
    case 'UNAUTHENTICATED':
      return 'Please sign in to do that.';
    case 'FORBIDDEN':
      return 'You are not allowed to do that.';
    case 'NOT_FOUND':
      return 'Not found: it may have been deleted or made private.';
    case 'BAD_USER_INPUT':
      return 'Please check what you entered.';
    case 'CONFLICT':
      return 'That conflicts with something that already exists.';
    case 'RATE_LIMITED':
      return retryAfterSeconds
        ? `Too many requests. Try again in ${retryAfterSeconds} s.`
        : 'Too many requests. Wait a moment and try again.';
    case 'PAYLOAD_TOO_LARGE':
      return 'That is too large.';
    case 'METHOD_NOT_ALLOWED':
      return 'That action is not supported.';
    case 'UNAVAILABLE':
      return 'Part of Flick is temporarily unavailable. Try again shortly.';
    case 'GONE':
      return 'This upload expired or was cancelled. Start it again.';
    case 'UNSUPPORTED_MEDIA_TYPE':
      return 'That file is not a video Flick can read.';
    case 'PRECONDITION_FAILED':
      return 'The request was refused (protocol mismatch). Reload the page and try again.';
    case 'CHECKSUM_MISMATCH':
      return 'Part of the upload arrived damaged; it will be sent again.';
    case 'QUERY_TOO_COMPLEX':
    case 'QUERY_TOO_DEEP':
      return 'The app asked for too much at once. Please report this.';
    case 'INTERNAL':
      return 'Something went wrong on our side. Try again later.';
    case 'NETWORK':
      return 'Cannot reach Flick. Check your connection.';
    case 'UNKNOWN':
      return 'Something went wrong.';
  }
}

/** snake_case → camelCase, so REST (`display_name`) and GraphQL fields meet one form name. */
export function camelField(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function readFields(value: unknown): Record<string, string> {
  const fields: Record<string, string> = {};
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (typeof v === 'string') fields[camelField(k)] = v;
    }
  }
  return fields;
}

function positive(n: unknown): number | undefined {
  const v = typeof n === 'string' ? Number.parseInt(n, 10) : n;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}

export function makeProblem(input: {
  code: ErrorCode;
  serverMessage?: string | undefined;
  fields?: Record<string, string>;
  retryAfterSeconds?: number | undefined;
  status?: number | undefined;
}): Problem {
  const { code, serverMessage, retryAfterSeconds, status } = input;
  const fields = input.fields ?? {};
  let message = messageFor(code, retryAfterSeconds);
  // The server's message is safe to show (kit's AppError); where it names the problem
  // better than the code does (a taken email, a quota, a failed rule), show it instead.
  // Input problems with fields are shown next to each input under a general sentence.
  const fieldsSayIt = code === 'BAD_USER_INPUT' && Object.keys(fields).length > 0;
  if (serverMessage && SERVER_MESSAGE_HELPS.has(code) && !fieldsSayIt) {
    message = capitalise(serverMessage);
  }
  const p: Problem = { code, message, fields };
  if (serverMessage) p.serverMessage = serverMessage;
  if (retryAfterSeconds !== undefined) p.retryAfterSeconds = retryAfterSeconds;
  if (status !== undefined) p.status = status;
  return p;
}

function capitalise(s: string): string {
  const t = s.trim();
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

// ---- GraphQL -----------------------------------------------------------------------------

/** What the app needs of a GraphQL error (urql's GraphQLError, graphql-ws's plain objects). */
export interface GraphQLErrorLike {
  message: string;
  extensions?: Record<string, unknown> | null | undefined;
}

/** What the app needs of urql's CombinedError. */
export interface CombinedErrorLike {
  graphQLErrors: readonly GraphQLErrorLike[];
  networkError?: Error | undefined;
  response?: unknown;
}

function statusOf(response: unknown): number | undefined {
  if (response && typeof response === 'object' && 'status' in response) {
    const s = (response as { status: unknown }).status;
    return typeof s === 'number' ? s : undefined;
  }
  return undefined;
}

function headerOf(response: unknown, name: string): string | undefined {
  if (response && typeof response === 'object' && 'headers' in response) {
    const h = (response as { headers: unknown }).headers;
    if (h && typeof (h as Headers).get === 'function') return (h as Headers).get(name) ?? undefined;
  }
  return undefined;
}

/** The first GraphQL error as a Problem (others are the same kind in practice). */
export function fromGraphQLErrors(errors: readonly GraphQLErrorLike[], status?: number): Problem {
  const first = errors[0];
  if (!first) return makeProblem({ code: 'UNKNOWN', status });
  const ext = first.extensions ?? {};
  const fields = readFields(ext['fields']);
  return makeProblem({
    code: normaliseCode(ext['code'], status),
    serverMessage: first.message,
    fields,
    retryAfterSeconds: positive(ext['retryAfterSeconds']),
    status,
  });
}

/** urql's CombinedError (GraphQL errors, or the HTTP status of a non-GraphQL answer). */
export function fromCombinedError(error: CombinedErrorLike): Problem {
  const status = statusOf(error.response);
  if (error.graphQLErrors.length > 0) return fromGraphQLErrors(error.graphQLErrors, status);
  if (status !== undefined && status !== 200) {
    return makeProblem({
      code: codeForStatus(status),
      retryAfterSeconds: positive(headerOf(error.response, 'retry-after')),
      status,
    });
  }
  return makeProblem({ code: 'NETWORK', serverMessage: error.networkError?.message });
}

/** Whether a GraphQL result means the caller's credentials are missing or no longer good. */
export function isAuthError(error: CombinedErrorLike): boolean {
  if (statusOf(error.response) === 401) return true;
  return error.graphQLErrors.some((e) => normaliseCode(e.extensions?.['code']) === 'UNAUTHENTICATED');
}

// ---- REST --------------------------------------------------------------------------------

/** A REST answer's error: `{"error": {"code", "message", "fields"?}}`, or whatever the edge sent. */
export function fromRest(status: number, body: string, retryAfter?: string | null): Problem {
  let code: ErrorCode = codeForStatus(status);
  let serverMessage: string | undefined;
  let fields: Record<string, string> = {};
  let retryAfterSeconds = positive(retryAfter ?? undefined);
  try {
    const parsed: unknown = JSON.parse(body);
    const err =
      parsed && typeof parsed === 'object' && 'error' in parsed ? (parsed as { error: unknown }).error : undefined;
    if (err && typeof err === 'object') {
      const e = err as Record<string, unknown>;
      code = normaliseCode(e['code'], status);
      if (typeof e['message'] === 'string') serverMessage = e['message'];
      fields = readFields(e['fields']);
      retryAfterSeconds ??= positive(e['retry_after_seconds'] ?? e['retryAfterSeconds']);
    }
  } catch {
    // Not JSON: the edge's own answer (Traefik's "Too Many Requests", a 502 page).
  }
  return makeProblem({ code, serverMessage, fields, retryAfterSeconds, status });
}

/** An error thrown by the REST helpers, carrying its Problem. */
export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.message);
    this.name = 'ApiError';
    this.problem = problem;
  }
}

// ---- tus ---------------------------------------------------------------------------------

/** What the app needs of tus-js-client's DetailedError. */
export interface TusErrorLike {
  message: string;
  originalResponse?: {
    getStatus(): number;
    getBody(): string | undefined | null;
    getHeader(name: string): string | undefined | null;
  } | null;
}

/** A tus failure: the transcoder's JSON error if there was an answer, else a network error. */
export function fromTus(error: TusErrorLike): Problem {
  const res = error.originalResponse;
  if (res) {
    const status = res.getStatus();
    if (status > 0) return fromRest(status, res.getBody() ?? '', res.getHeader('Retry-After'));
  }
  return makeProblem({ code: 'NETWORK', serverMessage: error.message });
}

// ---- anything ----------------------------------------------------------------------------

/** Any thrown value (ApiError, CombinedError, tus error, graphql-ws errors, CloseEvent). */
export function toProblem(error: unknown): Problem {
  if (error instanceof ApiError) return error.problem;
  if (Array.isArray(error)) return fromGraphQLErrors(error as GraphQLErrorLike[]);
  if (error && typeof error === 'object') {
    const e = error as Record<string, unknown>;
    if (Array.isArray(e['graphQLErrors'])) return fromCombinedError(error as CombinedErrorLike);
    if ('originalResponse' in e || 'originalRequest' in e) return fromTus(error as TusErrorLike);
    if (typeof e['code'] === 'number' && 'reason' in e) {
      // A WebSocket close: 4403 is graphql-ws's Forbidden (token expired or revoked).
      const code = e['code'] as number;
      if (code === 4403 || code === 4401) return makeProblem({ code: 'UNAUTHENTICATED' });
      if (code === 4429) return makeProblem({ code: 'RATE_LIMITED' });
      return makeProblem({ code: 'NETWORK', serverMessage: String(e['reason'] || '') || undefined });
    }
    if (error instanceof TypeError) return makeProblem({ code: 'NETWORK', serverMessage: error.message });
  }
  return makeProblem({ code: 'UNKNOWN', serverMessage: error instanceof Error ? error.message : undefined });
}
