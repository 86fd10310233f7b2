import { z } from 'zod';
import { diffBody, errorBody, fileListBody, generationBody, healthBody, listBody, pinRequest, restoredBody, restoreRequest, saveRequest } from './schemas.ts';

/** Named schemas, listed once under components and referenced from the paths. */
const named = {
  SaveGenerationRequest: [saveRequest, 'input'],
  Generation: [generationBody, 'output'],
  GenerationList: [listBody, 'output'],
  PinRequest: [pinRequest, 'input'],
  RestoreRequest: [restoreRequest, 'input'],
  RestoredGeneration: [restoredBody, 'output'],
  FileList: [fileListBody, 'output'],
  Diff: [diffBody, 'output'],
  Health: [healthBody, 'output'],
  Error: [errorBody, 'output'],
} as const satisfies Record<string, readonly [z.ZodType, 'input' | 'output']>;

function components() {
  const schemas: Record<string, unknown> = {};
  for (const [name, [s, io]] of Object.entries(named)) {
    const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' });
    schemas[name] = rest;
  }
  return schemas;
}
const json = (name: keyof typeof named) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } });
const error = (description: string) => ({ description, content: json('Error') });
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } };
const secured = [{ bearerAuth: [] }];

/** The OpenAPI 3.1 document of the generations function, generated from the same zod schemas that validate requests. */
export function buildOpenApi(serverUrl: string) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'codebegen-storage: generations',
      version: '1.1.0',
      description: 'Save, list, read, pin, download (tar.gz or zip), restore and delete CodebeGen generations; list and read their files one by one; diff two versions.',
    },
    servers: [{ url: serverUrl }],
    components: { schemas: components(), securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    paths: {
      '/': {
        post: {
          summary: 'Save a generation (the CodebeGen callback)',
          security: secured,
          requestBody: { required: true, content: json('SaveGenerationRequest') },
          responses: {
            201: { description: 'Saved (or the same generation sent again: header Idempotent-Replayed: true)', content: json('Generation') },
            400: error('Invalid body, field or path; the message names the field'),
            401: error('Missing or invalid token'),
            403: error('owner_id given by a user'),
            404: error("Another user's project"),
            409: error('Version taken, or the same generation id with other content'),
            413: error('Over the size limits'),
            415: error('Not application/json'),
          },
        },
        get: {
          summary: "List a project's generations, newest version first",
          security: secured,
          parameters: [
            { name: 'project_id', in: 'query', required: true, schema: { type: 'string', format: 'uuid' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'next_cursor of the previous page' },
          ],
          responses: { 200: { description: 'A page', content: json('GenerationList') }, 400: error('Bad query'), 401: error('No token'), 404: error('No such project for this user') },
        },
      },
      '/{id}': {
        get: {
          summary: 'A generation, with a fresh download URL',
          security: secured,
          parameters: [idParam],
          responses: { 200: { description: 'The generation', content: json('Generation') }, 400: error('Bad id'), 401: error('No token'), 404: error('Not found (or not yours)') },
        },
        patch: {
          summary: 'Pin or unpin a generation (pinned ones are never removed by the retention policy)',
          security: secured,
          parameters: [idParam],
          requestBody: { required: true, content: json('PinRequest') },
          responses: {
            200: { description: 'The generation, with fresh URLs', content: json('Generation') },
            400: error('Bad id, or a body other than exactly {"pinned": true|false}'),
            401: error('No token'),
            404: error('Not found (or not yours)'),
            413: error('Body over 4 KiB'),
            415: error('Not application/json'),
          },
        },
        delete: {
          summary: 'Delete a generation: files and record',
          security: secured,
          parameters: [idParam],
          responses: { 204: { description: 'Deleted' }, 400: error('Bad id'), 401: error('No token'), 404: error('Not found (or not yours)') },
        },
      },
      '/{id}/download': {
        get: {
          summary: 'The archive, tar.gz or zip; authorised by the signed token of download_url / zip_url, or a bearer token',
          parameters: [
            idParam,
            { name: 'token', in: 'query', schema: { type: 'string' }, description: 'The signed token of download_url or zip_url (either works for either format)' },
            { name: 'format', in: 'query', schema: { type: 'string', enum: ['tar.gz', 'zip'], default: 'tar.gz' } },
          ],
          responses: {
            200: {
              description:
                'tar.gz: application/gzip with Content-Length, X-Checksum-Sha256 and ETag (its sha256). zip: application/zip, streamed, the same root folder and files, the same bytes every time, weak ETag. Both with Content-Disposition.',
              content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } }, 'application/zip': { schema: { type: 'string', format: 'binary' } } },
            },
            304: { description: 'If-None-Match named its ETag' },
            400: error('Bad id or format'),
            401: error('Expired, tampered or missing token'),
            404: error('Not found (or not yours)'),
          },
        },
      },
      '/{id}/files': {
        get: {
          summary: "A generation's files: path, size, sha256 and media type of each, from its manifest (no archive is read)",
          security: secured,
          parameters: [idParam],
          responses: { 200: { description: 'Every file, sorted by path', content: json('FileList') }, 400: error('Bad id'), 401: error('No token'), 404: error('Not found (or not yours)') },
        },
      },
      '/{id}/files/{path}': {
        get: {
          summary: "One file's bytes, from whichever copy holds the generation, checked against its manifest's sha256",
          security: secured,
          parameters: [
            idParam,
            {
              name: 'path',
              in: 'path',
              required: true,
              schema: { type: 'string' },
              description: 'The file path as listed, slashes kept (app/main.py) or percent-encoded (app%2Fmain.py); each segment percent-decoded once',
            },
            { name: 'if-none-match', in: 'header', schema: { type: 'string' }, description: 'The ETag of an earlier answer: 304 if the file is the same' },
          ],
          responses: {
            200: {
              description: 'The bytes, with a Content-Type by file name (text types with charset=utf-8), ETag = "<sha256>", Content-Length, X-Checksum-Sha256',
              content: { '*/*': { schema: { type: 'string', format: 'binary' } } },
            },
            304: { description: 'If-None-Match named its ETag' },
            400: error('Bad id, or a path that could not name a file (.., NUL, \\, absolute, bad percent-encoding): invalid_path'),
            401: error('No token'),
            404: error('Generation not found (or not yours): generation_not_found; no such file in it: file_not_found'),
          },
        },
      },
      '/{id}/diff': {
        get: {
          summary: 'What changed from generation `against` to {id} (two generations of one project), from their manifests; patch=true adds unified diffs',
          security: secured,
          parameters: [
            idParam,
            { name: 'against', in: 'query', required: true, schema: { type: 'string', format: 'uuid' }, description: 'The older side' },
            { name: 'patch', in: 'query', schema: { type: 'string', enum: ['true', 'false'], default: 'false' } },
          ],
          responses: {
            200: { description: 'added, removed, modified, unchanged_count (and patches)', content: json('Diff') },
            400: error('Bad id or query, or generations of different projects'),
            401: error('No token'),
            404: error('Either generation not found (or not yours)'),
          },
        },
      },
      '/{id}/restore': {
        post: {
          summary: "Restore (fork) a generation as its project's next version: same files and metadata plus restored_from; the source is untouched",
          security: secured,
          parameters: [idParam],
          requestBody: { required: false, content: json('RestoreRequest') },
          responses: {
            201: { description: 'The new generation (or, for a generation_id sent again, the same one: header Idempotent-Replayed: true)', content: json('RestoredGeneration') },
            400: error('Bad id or body'),
            401: error('No token'),
            404: error('Not found (or not yours)'),
            409: error('generation_id taken, or used for other content'),
            413: error('Over the size limits'),
            415: error('A body that is not application/json'),
          },
        },
      },
      '/health': { get: { summary: 'Liveness, and whether db, storage and cloud are usable', responses: { 200: { description: 'Healthy', content: json('Health') }, 503: { description: 'Degraded', content: json('Health') } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1' } } } },
    },
  };
}
