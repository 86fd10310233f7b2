// The Storage stand-in as a process of its own, so a benchmark's Storage work does not share the service's event
// loop (the real Storage API runs elsewhere). Prints one JSON line {"url", "serviceKey"} when it listens.
//   node --import tsx test/storage-standin/main.ts --jwt-secret <secret> [--latency-ms 50] [--bytes-per-second 12500000] [--port 0]
//     [--file-size-limit 52428800]   (the project's global upload limit in bytes; default Supabase Free's 50 MB)
// Test and benchmark code only. Admin routes: GET|DELETE /__standin/requests, POST /__standin/faults.
import { parseArgs } from 'node:util';
import { startStorageStandIn } from './server.ts';

const { values } = parseArgs({
  options: {
    'jwt-secret': { type: 'string' },
    'latency-ms': { type: 'string', default: '0' },
    'bytes-per-second': { type: 'string' },
    port: { type: 'string', default: '0' },
    'file-size-limit': { type: 'string' },
  },
});
if (!values['jwt-secret']) throw new Error('--jwt-secret is required');
const standIn = await startStorageStandIn({
  jwtSecret: values['jwt-secret'],
  port: Number(values.port),
  fileSizeLimit: values['file-size-limit'] ? Number(values['file-size-limit']) : undefined,
  network: { latencyMs: Number(values['latency-ms']), bytesPerSecond: values['bytes-per-second'] ? Number(values['bytes-per-second']) : undefined },
});
console.log(JSON.stringify({ url: standIn.url, serviceKey: standIn.serviceKey }));
const stop = () => void standIn.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
