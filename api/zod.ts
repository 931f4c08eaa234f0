import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

// Once, before any schema is built: lets schemas carry their OpenAPI metadata.
extendZodWithOpenApi(z);

export { z };
