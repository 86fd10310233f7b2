import { z } from 'zod';
import { errorBody, generationBody, healthBody, listBody, saveRequest } from './schemas.ts';

/** Named schemas, listed once under components and referenced from the paths. */
const named = {
  SaveGenerationRequest: [saveRequest, 'input'],
  Generation: [generationBody, 'output'],
  GenerationList: [listBody, 'output'],
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
    info: { title: 'codebegen-storage: generations', version: '1.0.0', description: 'Save, list, read, download and delete CodebeGen generations.' },
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
        delete: {
          summary: 'Delete a generation: files and record',
          security: secured,
          parameters: [idParam],
          responses: { 204: { description: 'Deleted' }, 400: error('Bad id'), 401: error('No token'), 404: error('Not found (or not yours)') },
        },
      },
      '/{id}/download': {
        get: {
          summary: 'The tar.gz; authorised by the signed token of download_url, or a bearer token',
          parameters: [idParam, { name: 'token', in: 'query', schema: { type: 'string' } }],
          responses: {
            200: { description: 'application/gzip, with Content-Disposition and X-Checksum-Sha256', content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } } } },
            401: error('Expired, tampered or missing token'),
            404: error('Not found (or not yours)'),
          },
        },
      },
      '/health': { get: { summary: 'Liveness, and whether db, storage and cloud are usable', responses: { 200: { description: 'Healthy', content: json('Health') }, 503: { description: 'Degraded', content: json('Health') } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1' } } } },
    },
  };
}
