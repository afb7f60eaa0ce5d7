// The upload in progress, readable from anywhere (the header shows it) without loading
// tus-js-client: the manager (upload/manager.svelte.ts, in the upload page's chunk) writes it.

import { initialUpload, type UploadState } from './state';

export const current = $state<{ upload: UploadState }>({ upload: initialUpload });
